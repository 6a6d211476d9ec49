"""bench/order_effects.py's statistics on scripted judges with a known answer: a judge that reads
only each window's content agrees with itself across orders (agreement 1, within-window slope 0,
pooled slope near 0); a judge with a planted position bias (it says 1 more often near the top of
the prompt) is caught: agreement below 1 and both slopes negative, their intervals excluding 0."""
from __future__ import annotations

import asyncio
import json
import re
import zlib

import pytest

from bench.order_effects import ANIMALS, judge_both_orders, labelling_cases, summarize
from interp.llm import open_llm
from interp.llm.config import LLMConfig
from interp.scoring.config import ScoreConfig
from tests.fakeserver import FakeLLMServer


def _shown(messages) -> tuple[str, list[tuple[str, str]]]:
    user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    return user, re.findall(r"^Example (\w+): (.*)$", user, re.MULTILINE)


def _animal(text: str) -> int:
    return int(any(a in text.split() for a in ANIMALS))


def content_judge(messages):
    """Labels each window by its content alone (right or wrong does not matter here)."""
    _user, shown = _shown(messages)
    return json.dumps({"labels": {i: _animal(t) for i, t in shown}})


def top_biased_judge(messages):
    """Says 1 regardless of content with probability 0.6 at the first position, falling
    linearly to 0 at the last; otherwise labels by content."""
    user, shown = _shown(messages)
    n = len(shown)
    labels = {}
    for pos, (i, t) in enumerate(shown):
        u = zlib.crc32(f"{user}|{i}".encode()) / 2**32
        labels[i] = 1 if u < 0.6 * (1 - pos / (n - 1)) else _animal(t)
    return json.dumps({"labels": labels})


def _measure(judge):
    with FakeLLMServer(judge) as srv:
        cfg = LLMConfig(backend="openai", base_url=srv.base_url, structured_outputs="off",
                        max_retries=1, backoff_s=0.01, timeout_s=5)
        with open_llm(cfg) as llm:
            records = asyncio.run(judge_both_orders(llm, labelling_cases(30, 10), ScoreConfig()))
        bodies = list(srv.bodies)
    return summarize(records), records, bodies


def test_an_order_independent_judge_agrees_with_itself():
    out, records, bodies = _measure(content_judge)
    assert len(bodies) == 60 and out["cases"] == 30 and out["windows"] == 300
    assert out["failed"] == 0 and out["accuracy"] == 1.0
    assert out["agreement"] == [1.0, 1.0, 1.0] and out["kappa"] == [1.0, 1.0, 1.0]
    assert out["within_window_slope"] == [0.0, 0.0, 0.0]
    slope, lo, hi = out["slope_per_position"]
    assert lo < 0 < hi and abs(slope) < 0.02
    # the two orders of a case show the same windows, reordered, under fresh ids (requests run
    # concurrently, so the server sees them in any order: pair them by the windows they show)
    pairs: dict[tuple[str, ...], list] = {}
    for b in bodies:
        shown = _shown(b["messages"])[1]
        pairs.setdefault(tuple(sorted(t for _, t in shown)), []).append(shown)
    assert len(pairs) == 30 and all(len(p) == 2 for p in pairs.values())
    for first, second in pairs.values():
        assert [t for _, t in first] != [t for _, t in second]
        assert {i for i, _ in first} != {i for i, _ in second}


def test_a_planted_position_bias_is_detected():
    out, _records, _bodies = _measure(top_biased_judge)
    agreement, _lo, hi = out["agreement"]
    assert agreement < 1 and hi < 1 and out["kappa"][2] < 1
    for stat in ("slope_per_position", "within_window_slope"):
        slope, lo, hi = out[stat]
        assert hi < 0, stat
        # planted: P(1) falls by 0.6 * P(content says 0) / 9 per position, about 0.033
        assert slope == pytest.approx(-0.6 * 0.5 / 9, abs=0.02), stat
    first, last = out["p1_by_position"][0], out["p1_by_position"][9]
    assert first["rate"] > last["rate"] and first["ci"][0] > last["ci"][1]
