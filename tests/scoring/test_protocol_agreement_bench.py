"""bench/protocol_agreement.py on scripted judges with a known answer: a judge right 85% of the
time in both protocols shows no difference between them (the interval covers 0, both near 0.85),
a perfect judge shows exactly none, and a one-call form that gets worse down the prompt shows a
negative difference whose interval excludes 0. Both protocols judge the same windows."""
from __future__ import annotations

import asyncio

import pytest

from bench.protocol_agreement import judge_cases, keyword_cases, noisy_judge, summarize, truth
from interp.llm import open_llm
from interp.llm.config import LLMConfig
from tests.fakeserver import FakeLLMServer


def _measure(cases, p_correct, position_bias=0.0):
    with FakeLLMServer(noisy_judge(truth(cases), p_correct, position_bias)) as srv:
        cfg = LLMConfig(backend="openai", base_url=srv.base_url, structured_outputs="off",
                        max_retries=1, backoff_s=0.01, timeout_s=5)
        with open_llm(cfg) as llm:
            records = asyncio.run(judge_cases(llm, cases))
        return summarize(records), list(srv.bodies)


def test_same_competence_gives_no_difference():
    cases = keyword_cases(40)
    out, bodies = _measure(cases, 0.85)
    assert out["paired"] == 40 and out["failed_windows"] == {"one_call": 0, "per_window": 0}
    assert out["windows"] == {"one_call": 400, "per_window": 400}
    assert len(bodies) == 40 * (1 + 10)  # one call per case, and one per window
    assert out["accuracy_one_call"] == pytest.approx(0.85, abs=0.05)
    assert out["accuracy_per_window"] == pytest.approx(0.85, abs=0.05)
    mean, lo, hi = out["difference"]
    assert lo < 0 < hi and abs(mean) < 0.05


def test_a_perfect_judge_is_perfect_both_ways():
    out, _ = _measure(keyword_cases(8), 1.0)
    assert out["accuracy_one_call"] == out["accuracy_per_window"] == 1.0
    assert out["difference"][0] == 0.0


def test_a_one_call_form_that_degrades_down_the_prompt_is_caught():
    out, _ = _measure(keyword_cases(40), 0.85, position_bias=0.3)
    # planted: one-call accuracy 0.85 - 0.3 * mean(position / 9) = 0.70
    assert out["accuracy_one_call"] == pytest.approx(0.70, abs=0.05)
    mean, lo, hi = out["difference"]
    assert hi < 0 and mean == pytest.approx(-0.15, abs=0.05)
