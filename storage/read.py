"""Opening the catalogue for reading: the one place that connects, checks the file and resolves
SAE keys, for `interp query`, `interp show`, the browser and the report.

Every read connection may run SQL a person typed (`interp query`, the browser's filters), so
every one is read-only with external access off (no `read_csv`, `glob`, `COPY ... TO`,
`INSTALL`) and its configuration locked so a statement cannot turn it back on; storage.query
adds the statement checks. One configuration for all of them also because DuckDB refuses a
second connection to an open file with a different one.
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from interp.duck import OFFLINE

CATALOG = "catalog.duckdb"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQL_DIR = Path(__file__).parent / "sql"
DUCKDB_CONFIG = OFFLINE  # offline by design: an unknown function never fetches an extension
READ_CONFIG = DUCKDB_CONFIG | {"enable_external_access": False, "lock_configuration": True}
_HEADER_BYTES = 3 * 4096  # DuckDB's main header and two database headers precede the blocks
_VERSION_SQL = "SELECT coalesce(max(version), 0) FROM schema_version"
_SIZE_SQL = "SELECT block_size, total_blocks FROM pragma_database_size()"
_METADATA_BLOCKS_SQL = "SELECT max(block_id) FROM pragma_metadata_info()"
_TABLES_SQL = "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
_TABLE_BLOCKS_SQL = ("SELECT max(b) FROM (SELECT unnest(list_value(block_id) || "
                     "coalesce(additional_block_ids, [])) AS b FROM pragma_storage_info('{table}'))")
_SAE_PREFIX_SQL = "SELECT sae_key FROM saes WHERE starts_with(sae_key, ?) ORDER BY sae_key"
_SAE_ALL_SQL = "SELECT sae_key FROM saes ORDER BY sae_key"
_HAS_TABLE_SQL = "SELECT count(*) FROM information_schema.tables WHERE table_name = ?"
# Reads every column of every row (not prunable, unlike count(*)), so every data block's checksum;
# the alias names the whole row, so it must not be a column name.
_SCAN_SQL = 'SELECT max(hash(whole_row_)) FROM "{table}" whole_row_'
# DuckDB's error for a block whose bytes fail their checksum. Anchored: an error about a
# statement that merely quotes these words (a cast of a string literal) never matches.
_DAMAGE = re.compile(r"^(IO Error: )?Corrupt database file", re.IGNORECASE)


class CatalogError(RuntimeError):
    """The catalogue file is damaged or of another schema version; the message says what to do."""


def catalog_path(home: Path) -> Path:
    return Path(home) / CATALOG


def migrations() -> list[tuple[int, str, Path]]:
    """(version, name, file) of every numbered migration, in the order they apply."""
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql")):
        number, _, name = path.stem.partition("_")
        found.append((int(number), name, path))
    return found


LATEST_VERSION = migrations()[-1][0]


def damaged(path: Path, err: BaseException | str) -> CatalogError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CatalogError(f"the catalogue {path} is damaged ({first}); recreate it from the "
                        f"artifacts with `interp publish --rebuild`")


def is_damage(err: BaseException) -> bool:
    """Whether a DuckDB error says the catalogue file itself is damaged, not the statement."""
    return isinstance(err, duckdb.Error) and bool(_DAMAGE.match(str(err).strip()))


@contextlib.contextmanager
def damage_named(path: Path) -> Iterator[None]:
    """Turn DuckDB's error for a damaged block, met by any statement in the block, into a
    CatalogError naming `path` and `interp publish --rebuild`. DuckDB checks a block only when
    a query reads it, so opening a file is no proof that its blocks are intact."""
    try:
        yield
    except duckdb.Error as err:
        if is_damage(err):
            raise damaged(path, err) from None
        raise


def check_blocks(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Read every table whole, so a damaged data block raises CatalogError now (publish: the
    damage would otherwise be carried into the new file and its rc would be 0). Measured on a
    busy 2-core machine: 0.2-0.4 s for 10^7 rows of 7 columns (170 MB); the copy took 0.06 s."""
    with damage_named(path):
        for (table,) in con.execute(_TABLES_SQL).fetchall():
            # A constant table name, from the file's own catalogue (as in _max_block).
            con.execute(_SCAN_SQL.format(table=table.replace('"', '""'))).fetchall()


def _max_block(con) -> int:
    """The highest block id any table or the metadata uses; -1 for an empty file."""
    ids = [r[0] for r in con.execute(_METADATA_BLOCKS_SQL).fetchall()]
    for (table,) in con.execute(_TABLES_SQL).fetchall():
        # pragma_storage_info takes a constant table name; names come from the file's own catalogue.
        quoted = table.replace("'", "''")
        ids.append(con.execute(_TABLE_BLOCKS_SQL.format(table=quoted)).fetchone()[0])
    return max((i for i in ids if i is not None), default=-1)


def check_intact(con: duckdb.DuckDBPyConnection, path: Path, size: int) -> None:
    """Refuse a truncated file: DuckDB opens one whose tail is cut off and answers from the blocks
    that remain, so check the file reaches the last block that its tables and metadata use. Free
    blocks at the end may legitimately be missing, so the exact (~50 ms) count runs only when the
    file is shorter than all of its blocks. `size`: of the file `con` opened (`path` may since
    name a newer one)."""
    block_size, total_blocks = con.execute(_SIZE_SQL).fetchone()
    actual = size
    if actual >= _HEADER_BYTES + int(total_blocks) * int(block_size):
        return
    expected = _HEADER_BYTES + (_max_block(con) + 1) * int(block_size)
    if actual < expected:
        raise damaged(path, f"{actual} bytes on disk, its blocks need {expected}")


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The highest migration applied to the open catalogue; 0 for one made before migrations."""
    try:
        return con.execute(_VERSION_SQL).fetchone()[0]
    except duckdb.CatalogException:
        return 0


def _connect_stable(path: Path) -> tuple[duckdb.DuckDBPyConnection, int]:
    """Connect, and the size of the very file connected to: a publish may rename a new catalogue
    over `path` while DuckDB opens it, so retry until the same inode was there before and after."""
    for _ in range(10):
        before = os.stat(path)
        try:
            con = duckdb.connect(str(path), read_only=True, config=READ_CONFIG)
        except duckdb.Error as err:  # IOException; a damaged metadata block is a plain Error
            if os.stat(path).st_ino != before.st_ino:
                continue  # replaced mid-open: the new file is complete, try it
            raise damaged(path, err) from None
        after = os.stat(path)
        if after.st_ino == before.st_ino:
            return con, after.st_size
        con.close()
    raise CatalogError(f"the catalogue {path} was replaced ten times while opening it; try again")


def connect_readonly(home: Path) -> duckdb.DuckDBPyConnection:
    """A locked-down read-only connection to the catalogue, checked intact and of this schema."""
    path = catalog_path(home)
    if not path.is_file():
        raise FileNotFoundError(f"no catalogue at {path}: run `interp run` first (or `interp publish`)")
    con, size = _connect_stable(path)
    try:
        check_intact(con, path, size)
        version = schema_version(con)
    except duckdb.Error as err:
        con.close()
        raise damaged(path, err) from None
    except CatalogError:
        con.close()
        raise
    if version != LATEST_VERSION:
        con.close()
        hint = ("run `interp publish` to migrate it" if version < LATEST_VERSION
                else "it was written by a newer interp")
        raise CatalogError(f"the catalogue {path} has schema version {version}, this interp reads "
                           f"version {LATEST_VERSION}: {hint}")
    return con


@contextlib.contextmanager
def reading(home: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """connect_readonly for one `with` block: closed after it, and a read that meets a damaged
    block raises CatalogError naming the file and `interp publish --rebuild`."""
    con = connect_readonly(home)
    try:
        with damage_named(catalog_path(home)):
            yield con
    finally:
        con.close()


def resolve_sae(con, prefix: str) -> str:
    """The full SAE key for an exact key or a unique prefix; ValueError naming the known keys."""
    keys = [r[0] for r in con.execute(_SAE_PREFIX_SQL, [prefix]).fetchall()]
    if prefix in keys:
        return prefix
    if len(keys) != 1:
        known = [r[0] for r in con.execute(_SAE_ALL_SQL).fetchall()]
        raise ValueError(f"SAE {prefix!r} matches {len(keys)} SAEs; known: {', '.join(known) or 'none'}")
    return keys[0]


def queries(name: str) -> dict[str, str]:
    """The named queries of storage/sql/<name>.sql: each starts at a `-- name: <query>` line."""
    parts = re.split(r"^-- name: (\w+)[ \t]*$", (SQL_DIR / f"{name}.sql").read_text(), flags=re.M)
    return {key: body.strip().rstrip(";") for key, body in zip(parts[1::2], parts[2::2])}


def dicts(cur, sql: str, params: Any = None) -> list[dict[str, Any]]:
    """Rows of a query as {column: value} dicts."""
    res = cur.execute(sql, params or [])
    cols = [d[0] for d in res.description]
    return [dict(zip(cols, r)) for r in res.fetchall()]


def has_table(cur, name: str) -> bool:
    return cur.execute(_HAS_TABLE_SQL, [name]).fetchone()[0] > 0
