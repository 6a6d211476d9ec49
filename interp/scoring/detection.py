"""Detection (delphi's): the judge says which held-out windows the explanation describes.

It sees activating windows from every activation quantile and non-activating ones (hard
negatives first when mined), unmarked, and answers 1 or 0 for each. Headline: balanced accuracy
(chance 0.5). Cost: ceil((n_positive + n_negative) / batch_size) calls per latent.
"""
from __future__ import annotations

import random
from typing import Any

from pydantic import Field

from interp.config_base import _Strict
from interp.mine.examples import Example
from interp.scoring.classifier import WindowJudge
from interp.scoring.windows import Item, detection_items


class DetectionConfig(_Strict):
    """Detection: the judge says whether each held-out window fits the explanation."""

    prompt: str = Field("score_detection", description="Template ('<prompt>_batch' when "
                        "score.batch_size > 1).")


class Detection(WindowJudge):
    name = "detection"
    Config = DetectionConfig

    def items(self, score: Any, examples: list[Example], rng: random.Random) -> list[Item]:
        return detection_items(examples, score.n_positive, score.n_negative, rng)
