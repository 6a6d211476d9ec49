"""LLM client against a real local HTTP server: retries, backoff, ledger, non-retryable errors."""
from __future__ import annotations

import asyncio

import pytest

from interp.config import LLMConfig
from interp.llm import Ledger, LLMError, OpenAICompatibleLLM
from tests.fakeserver import FakeLLMServer

MSG = [{"role": "user", "content": "hi"}]


def _cfg(url: str, **kw) -> LLMConfig:
    base = dict(backend="openai", base_url=url, max_retries=4, backoff_s=0.01, timeout_s=0.5,
                concurrency=4)
    return LLMConfig(**(base | kw))


def _run(llm, coro):
    async def go():
        try:
            return await coro
        finally:
            await llm.aclose()
    return asyncio.run(go())


@pytest.mark.parametrize("fault", ["429", "500", "timeout", "malformed", "empty"])
def test_transient_faults_are_retried_and_recorded(fault):
    with FakeLLMServer(lambda m: "hello", script=[fault, fault], hang_s=1.0) as srv:
        ledger = Ledger()
        llm = OpenAICompatibleLLM(_cfg(srv.base_url), srv.base_url, ledger)
        r = _run(llm, llm.generate(MSG, max_tokens=5, stage="t", latent=3))
    assert r.text == "hello" and r.attempts == 3
    rows = ledger.drain()
    assert [x["status"] for x in rows] == ["retry", "retry", "ok"]
    assert all(x["latent"] == 3 and x["stage"] == "t" for x in rows)
    assert rows[-1]["completion_tokens"] == 1 and rows[0]["error"]


def test_client_errors_are_not_retried():
    with FakeLLMServer(lambda m: "x", script=["400"]) as srv:
        ledger = Ledger()
        llm = OpenAICompatibleLLM(_cfg(srv.base_url), srv.base_url, ledger)
        with pytest.raises(LLMError) as err:
            _run(llm, llm.generate(MSG, max_tokens=5))
        assert srv.requests == ["400"]
    assert err.value.attempts == 1 and "400" in err.value.reason
    assert [r["status"] for r in ledger.drain()] == ["error"]


def test_gives_up_after_max_retries():
    with FakeLLMServer(lambda m: "x", script=["500"] * 10) as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, max_retries=2), srv.base_url)
        with pytest.raises(LLMError) as err:
            _run(llm, llm.generate(MSG, max_tokens=5))
        assert len(srv.requests) == 3
    assert err.value.attempts == 3


def test_concurrency_is_bounded():
    import threading
    import time

    live, peak, lock = [0], [0], threading.Lock()

    def slow(messages):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.05)
        with lock:
            live[0] -= 1
        return "ok"

    with FakeLLMServer(slow) as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, concurrency=2), srv.base_url)

        async def many():
            return await asyncio.gather(*(llm.generate(MSG, max_tokens=3) for _ in range(8)))
        assert len(_run(llm, many())) == 8
    assert peak[0] == 2


def test_prefill_is_prepended_when_server_returns_continuation():
    with FakeLLMServer(lambda m: " years") as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url), srv.base_url)
        msgs = MSG + [{"role": "assistant", "content": "[EXPLANATION]:"}]
        r = _run(llm, llm.generate(msgs, max_tokens=5))
    assert r.text == "[EXPLANATION]: years"
