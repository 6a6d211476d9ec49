"""DuckDB connections of the library (reading and writing its own Parquet and JSON-lines files)
and the configuration every connection in interp starts from: offline by design, so an
unknown function never makes DuckDB fetch an extension (json and parquet are built in)."""
from __future__ import annotations

from typing import Any

import duckdb

OFFLINE = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def connect(**config: Any) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with OFFLINE and `config` (e.g. temp_directory)."""
    return duckdb.connect(config=OFFLINE | config)
