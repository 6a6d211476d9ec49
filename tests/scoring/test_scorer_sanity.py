"""Sanity of detection, fuzzing and embedding scoring through the scorer interface: a deterministic
keyword judge (an in-process LLM that answers from whether the explanation's keyword is in the
window, or inside the marks) and real MiniLM give ~1.0 for true explanations and ~0.5 for
shuffled ones, averaged over several latents with distinct keywords."""
from __future__ import annotations

import asyncio
import math
import random
import re
import statistics

import pytest

from interp.config import build_config
from interp.llm.base import LLMResponse
from interp.mine.examples import Example
from interp.scoring.base import ScoreContext
from interp.scoring.registry import SCORERS
from interp.scoring.resources import StageResources as Resources

KEYWORDS = ["banana", "guitar", "volcano", "senator", "umbrella", "penguin"]
FILLER = ["the", "walked", "slowly", "across", "a", "quiet", "street", "before", "evening",
          "and", "then", "turned", "left", "near", "old", "house", "with", "friends"]


class KeywordJudge:
    """Answers 1 iff the explanation's last word occurs in the example (fuzzing: in a mark)."""

    model = "keyword-judge"

    async def generate(self, messages, *, max_tokens, temperature=0.0, logprobs=None,
                       stage="", latent=None, schema=None, purpose=None):
        user = messages[-2]["content"]
        keyword = re.search(r"Description: (.*)", user).group(1).split()[-1]
        example = re.search(r"Example: (.*)", user).group(1)
        marked = re.findall(r"<<(.*?)>>", example)
        hit = any(keyword in m for m in marked) if marked else keyword in example
        alternatives = [("1", math.log(0.9)), ("0", math.log(0.1))]  # most likely first
        top = [alternatives if hit else [("0", math.log(0.9)), ("1", math.log(0.1))]]
        return LLMResponse(" 1" if hit else " 0", 10, 1, 0.0, 1, top)


def _examples(latent: int, keyword: str, rng: random.Random) -> list[Example]:
    out = []
    for i in range(8):  # held-out activating windows: the keyword fires
        toks = [f" {rng.choice(FILLER)}" for _ in range(10)]
        pos = rng.randrange(10)
        toks[pos] = f" {keyword}"
        acts = tuple(5.0 if j == pos else 0.0 for j in range(10))
        out.append(Example(latent, "quantile", "test", i, i % 2, 10 * latent + i, 1, 5.0,
                           tuple(toks), acts))
    for i in range(8):
        toks = tuple(f" {rng.choice(FILLER)}" for _ in range(10))
        out.append(Example(latent, "random", "test", i, -1, 1000 + 10 * latent + i, 1, 0.0,
                           toks, (0.0,) * 10))
    return out


async def _score_all(scorer: str, explanations: list[str], ctx, examples) -> list[dict]:
    return [(await SCORERS[scorer].run(ctx, lat, explanations[lat], examples[lat])).metrics
            for lat in range(len(KEYWORDS))]


@pytest.fixture(scope="module")
def resources():
    # Module-scoped: MiniLM loads once (~10 s), as it does once per stage run.
    return Resources(build_config({"score": {"n_positive": 8, "n_negative": 8, "batch_size": 1}}))


@pytest.mark.parametrize("scorer", ["detection", "fuzzing", "embedding"])
def test_true_explanations_near_one_shuffled_near_half(scorer, resources):
    rng = random.Random(0)
    examples = [_examples(lat, kw, rng) for lat, kw in enumerate(KEYWORDS)]
    ctx = ScoreContext(resources.cfg, KeywordJudge(), resources)
    true = [f"the word {kw}" for kw in KEYWORDS]
    shuffled = true[1:] + true[:1]  # a derangement: every latent gets another's explanation
    good = asyncio.run(_score_all(scorer, true, ctx, examples))
    bad = asyncio.run(_score_all(scorer, shuffled, ctx, examples))
    for m in good + bad:
        assert m["n_failed"] == 0 and m["n_examples"] == 16
    ba_good = statistics.mean(m["balanced_accuracy"] for m in good)
    ba_bad = statistics.mean(m["balanced_accuracy"] for m in bad)
    auc_good = statistics.mean(m["auc"] for m in good)
    auc_bad = statistics.mean(m["auc"] for m in bad)
    assert ba_good >= 0.95 and auc_good >= 0.95
    assert abs(ba_bad - 0.5) <= 0.15 and abs(auc_bad - 0.5) <= 0.2
