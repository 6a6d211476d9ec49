"""LLM client against a real local HTTP server: retries, backoff, ledger, non-retryable errors."""
from __future__ import annotations

import asyncio

import pytest

from interp.llm import Ledger, LLMError, LLMUnavailable, OpenAICompatibleLLM, open_llm
from interp.llm.config import LLMConfig
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
def test_transient_faults_are_retried_and_recorded(fault, transport):
    with FakeLLMServer(lambda m: "hello", script=[fault, fault], hang_s=1.0) as srv:
        ledger = Ledger()
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, transport=transport), srv.base_url, ledger)
        r = _run(llm, llm.generate(MSG, max_tokens=5, stage="t", latent=3))
    assert r.text == "hello" and r.attempts == 3
    rows = ledger.drain()
    assert [x["status"] for x in rows] == ["retry", "retry", "ok"]
    assert all(x["latent"] == 3 and x["stage"] == "t" for x in rows)
    assert rows[-1]["completion_tokens"] == 1 and rows[0]["error"]


def test_client_errors_are_not_retried(transport):
    with FakeLLMServer(lambda m: "x", script=["400"]) as srv:
        ledger = Ledger()
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, transport=transport), srv.base_url, ledger)
        with pytest.raises(LLMError) as err:
            _run(llm, llm.generate(MSG, max_tokens=5))
        assert srv.requests == ["400"]
    assert err.value.attempts == 1 and "400" in err.value.reason
    assert [r["status"] for r in ledger.drain()] == ["error"]


def test_gives_up_after_max_retries_as_unavailable(transport):
    """No answer after every retry is an outage (never a result), naming the server."""
    with FakeLLMServer(lambda m: "x", script=["500"] * 10) as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, max_retries=2, transport=transport), srv.base_url)
        with pytest.raises(LLMUnavailable) as err:
            _run(llm, llm.generate(MSG, max_tokens=5))
        assert len(srv.requests) == 3
    assert err.value.attempts == 3 and not err.value.fatal and srv.base_url in str(err.value)


@pytest.mark.parametrize("code", ["401", "403", "404"])
def test_configuration_errors_are_fatal_at_once(code, transport):
    with FakeLLMServer(lambda m: "x", script=[code] * 5) as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, transport=transport), srv.base_url)
        with pytest.raises(LLMUnavailable) as err:
            _run(llm, llm.generate(MSG, max_tokens=5))
        assert srv.requests == [code]
    assert err.value.fatal and code in err.value.reason


def test_an_empty_answer_every_time_is_the_models_answer(transport):
    with FakeLLMServer(lambda m: "x", script=["empty"] * 5) as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, max_retries=2, transport=transport), srv.base_url)
        with pytest.raises(LLMError) as err:
            _run(llm, llm.generate(MSG, max_tokens=5))
    assert not isinstance(err.value, LLMUnavailable) and "empty" in err.value.reason


def test_one_client_serves_successive_event_loops(transport):
    """explain and score each run their own loop with the one client the caller opened."""
    with FakeLLMServer(lambda m: "hello") as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, transport=transport), srv.base_url)
        for _ in range(2):
            assert _run(llm, llm.generate(MSG, max_tokens=3)).text == "hello"


def test_open_llm_probes_the_server_first(tmp_path):
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    t0 = time.monotonic()
    with pytest.raises(LLMUnavailable, match="cannot connect") as err:
        with open_llm(_cfg(dead, backoff_s=0.05)):
            pass
    assert dead in str(err.value) and time.monotonic() - t0 < 10
    with FakeLLMServer(lambda m: "x") as srv:
        srv.models = ["qwen"]
        with pytest.raises(LLMUnavailable, match="not llm.model"):
            with open_llm(_cfg(srv.base_url, model="smollm")):
                pass
        with open_llm(_cfg(srv.base_url, model="qwen"), home=tmp_path) as llm:
            assert llm.width == 4 and _run(llm, llm.generate(MSG, max_tokens=3)).text == "x"


def test_concurrency_is_bounded(transport):
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
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, concurrency=2, transport=transport), srv.base_url)

        async def many():
            return await asyncio.gather(*(llm.generate(MSG, max_tokens=3) for _ in range(8)))
        assert len(_run(llm, many())) == 8
    assert peak[0] == 2


def test_prefill_is_prepended_when_server_returns_continuation(transport):
    with FakeLLMServer(lambda m: " years") as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, transport=transport), srv.base_url)
        msgs = MSG + [{"role": "assistant", "content": "[EXPLANATION]:"}]
        r = _run(llm, llm.generate(msgs, max_tokens=5))
    assert r.text == "[EXPLANATION]: years"
