"""interp: automated interpretability of SAE latents. `interp.open(home)` is the notebook API
(interp/notebook.py); it is imported on first use so `import interp` stays light."""
from __future__ import annotations

from typing import Any


def open(home: Any = None) -> Any:  # noqa: A001 - `interp.open(home)` reads like `duckdb.connect`
    """A read-only `interp.notebook.Catalogue` over `<home>/catalog.duckdb` (default $INTERP_HOME)."""
    from interp.notebook import Catalogue

    return Catalogue(home)
