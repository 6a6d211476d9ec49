"""Fuzzing (delphi's): the judge says whether a window's marked tokens are what the explanation
describes.

It sees held-out activating windows whose marks sit either on the truly activating tokens (label
1) or on as many random other tokens (label 0), and answers 1 or 0 for each. Headline: balanced
accuracy (chance 0.5). Cost: ceil((n_positive + n_negative) / batch_size) calls per latent.
"""
from __future__ import annotations

import random
from typing import Any

from pydantic import Field

from interp.config_base import _Strict
from interp.mine.examples import Example
from interp.scoring.classifier import WindowJudge
from interp.scoring.windows import Item, fuzzing_items


class FuzzingConfig(_Strict):
    """Fuzzing: the judge says whether a window's marked tokens fit the explanation."""

    prompt: str = Field("score_fuzzing", description="Template ('<prompt>_batch' when "
                        "score.batch_size > 1).")


class Fuzzing(WindowJudge):
    name = "fuzzing"
    Config = FuzzingConfig
    needs = ("positives",)  # it marks activating windows only, correctly or not

    def items(self, score: Any, examples: list[Example], rng: random.Random) -> list[Item]:
        return fuzzing_items(examples, score.n_positive, score.n_negative, rng)
