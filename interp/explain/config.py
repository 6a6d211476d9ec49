"""The explain stage's config."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from interp.config_base import _Strict


class ExplainConfig(_Strict):
    """Explanation generation."""

    prompt: str = Field("explain_default", description="Template name in prompts/ (without .md): "
        "explain_default, explain_contrastive (also shows non-activating windows, $negatives), "
        "explain_cot (reasons first; the answer after its one [EXPLANATION]: marker), ...")
    n_examples: int = Field(6, gt=0, description="Activating (train-split) windows shown to the explainer.")
    train_set: Literal["top", "quantile", "mixed", "top_iw"] = Field("top", description="Which "
        "activating windows are shown: the top ones, ones stratified over activation quantiles "
        "(needs mine.train_per_quantile), half of each (mixed), or the top ones plus the "
        "importance-weighted train windows (top_iw, SAEBench's; needs mine.n_iw). Held-out "
        "(test) windows are never shown.")
    n_negatives: int = Field(4, ge=0, description="Non-activating train windows shown by prompts "
        "that use $negatives (hard negatives first when mined).")
    top_tokens: bool = Field(True, description="Show the most frequent activating tokens "
        "($top_tokens; helps small explainers); False drops the template line holding it.")
    output_tokens: bool = Field(False, description="Show the tokens the latent's decoder "
        "direction promotes ($output_tokens, from the logits stage; prompt explain_output uses "
        "it); False drops the template line holding it.")
    max_tokens: int = Field(40, gt=0, description="Completion token budget of a free-text answer "
                            "(a server without structured outputs).")
    max_chars: int = Field(160, gt=0, description="Longest explanation, in characters, when the "
                           "answer is constrained to JSON (its token budget follows from it).")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature.")
    n_latents: int | None = Field(
        24, gt=0, description="Explain a seeded random sample of N eligible latents; None = all.")
    min_examples: int = Field(3, gt=0, description="Skip latents with fewer activating windows.")
    min_heldout: int = Field(5, gt=0, description="Explain only latents with at least this many "
        "held-out activating windows (test-split quantile samples): a score over one or two "
        "positives says little, and per-class intervals need a few of each.")
    embed: bool = Field(True, description="Embed the ok explanations with MiniLM into the "
                        "artifact (the browser's semantic search; publish only inserts them). "
                        "Loading MiniLM takes ~10 s once per stage run.")
