"""Shared fixtures: tiny synthetic runs through the real stage functions."""
from __future__ import annotations

import math
import os
import re

import pytest

from interp.artifacts import ArtifactRef
from interp.config import build_config
from tests.builders import make_shards
from tests.fakeserver import FakeLLMServer

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

pytest_plugins = ["pytester"]  # tests/test_fast_lane.py runs the slow-fixture guard in a sub-session

# Fixtures that start what the fast lane (`-m "not slow"`) must never start. A test that uses one
# without the slow marker fails at setup, before the fixture runs: the fast lane stays fast, and
# a new test gets the marker it needs instead of silently converting the model on every run.
SLOW_FIXTURES = {
    "model_cache": "the real subject model",
    "prefect_server": "Prefect's test harness",  # tests/test_rescore.py
    "browser": "Chromium",  # tests/ui/test_browser.py
}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("slow") is not None:
        return
    for name in SLOW_FIXTURES:
        if name in item.fixturenames:
            pytest.fail(f"{item.nodeid} uses the fixture {name} ({SLOW_FIXTURES[name]}): mark the "
                        f"test @pytest.mark.slow, so that the fast lane (-m 'not slow') skips it",
                        pytrace=False)


def scripted_answer(messages: list[dict]):
    """Explainer: names the most frequent marked token. Batch scorer: alternating 1/0. Per-example
    scorer: ' 1' with log-probs, P(1) growing with the example's length (a deterministic signal)."""
    user = messages[-2]["content"] if messages[-1]["role"] == "assistant" else messages[-1]["content"]
    if "EXPLANATION" in messages[-1]["content"]:
        first = re.search(r'"([^"]+)"', user)
        return f"[EXPLANATION]: the token {first.group(1) if first else 'unknown'}"
    n = len(re.findall(r"^Example \d+:", user, re.MULTILINE))
    if n:
        return "[RESULT]: " + ", ".join(str(i % 2) for i in range(n))
    p1 = min(0.95, 0.05 + len(user) % 97 / 100)
    return " 1" if p1 >= 0.5 else " 0", [[(" ", -0.1)], [("1", math.log(p1)), ("0", math.log(1 - p1))]]


def tiny_config(home, url: str, **over):
    data = {
        "home": str(home),
        "corpus": {"seq_len": 17},
        "sae": {"expansion_factor": 2, "k": 2, "batch_size": 64, "epochs": 2, "eval_sequences": 0},
        "mine": {"window": 4, "n_top": 5, "n_quantiles": 2, "per_quantile": 2, "n_random": 4},
        # The scripted server answers text: structured outputs off (no probe request either).
        "llm": {"backend": "openai", "base_url": url, "max_retries": 2, "backoff_s": 0.01,
                "structured_outputs": "off",
                "timeout_s": 5},
        # MiniLM takes ~10 s to load per process: only the tests about embeddings turn it on.
        "explain": {"n_examples": 3, "min_examples": 2, "min_heldout": 2, "n_latents": None,
                    "embed": False},
        # Controls (on by default) triple the judge calls; tests of them turn them on.
        "score": {"n_positive": 2, "n_negative": 2, "batch_size": 4, "controls": [], "min_per_class": 2},
        # Synthetic activations have no subject model behind them: no logit lens (test_logit_lens).
        "logits": {"k": 0},
    }
    for k, v in over.items():
        data.setdefault(k, {}).update(v)
    return build_config(data)


@pytest.fixture
def fake_llm():
    with FakeLLMServer(scripted_answer) as srv:
        yield srv


@pytest.fixture(params=["lean", "openai"])
def transport(request) -> str:
    """llm.transport: the tests of HTTP behaviour run against both clients."""
    return request.param


@pytest.fixture
def collected(tmp_path) -> ArtifactRef:
    """A collect artifact of random activations (d=8, 40 sequences of BOS + 16 tokens)."""
    path = make_shards(tmp_path / "artifacts" / "collect" / "c0ffee", n_seq=40, seq_len=17, d=8)
    return ArtifactRef("collect", "c0ffee", path)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """One safetensors conversion of the embedded GGUF per test session (~30 s), shared by the
    tests that load the real subject model."""
    return tmp_path_factory.mktemp("models")
