"""Configs of the analysis stages (match, logits)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from interp.config_base import _Strict


class MatchConfig(_Strict):
    """Decoder matching of a new SAE against the other SAEs of its model and hookpoint."""

    NOT_IN_KEY: ClassVar[frozenset[str]] = frozenset({"device"})
    max_peers: int = Field(4, ge=0, description="Match against at most this many other SAEs "
                           "(the newest); 0 = skip. Exact top-1 costs latents_a x latents_b x d "
                           "multiply-adds per pair: seconds on a GPU at 65k x 65k.")
    device: str | None = Field(None, description="Device of the matching; None = sae.device, "
                               "else model.device.")


class LogitsConfig(_Strict):
    """The output side of each latent: its decoder direction through the final norm and unembedding."""

    NOT_IN_KEY: ClassVar[frozenset[str]] = frozenset({"device", "block"})
    k: int = Field(10, ge=0, description="Top promoted and top suppressed tokens kept per latent; "
                   "0 = skip the stage's work (an empty table).")
    block: int = Field(1024, ge=1, description="Latents projected at once: memory is block x vocab "
                       "x 4 bytes (200 MB for a 49k vocabulary).")
    device: str | None = Field(None, description="Device of the projection; None = model.device.")
