"""API keys never reach a stored error string or a log line: `redact`, and the client against a
server that echoes the key in its 401 / 500 bodies."""
from __future__ import annotations

import asyncio
import logging

import pytest

from interp.llm import Ledger, LLMError, LLMUnavailable, OpenAICompatibleLLM
from interp.llm.base import REDACTED, redact
from interp.llm.config import LLMConfig
from tests.fakeserver import FakeLLMServer


@pytest.mark.parametrize("text, secrets, expected", [
    ("key=ZZtopZZ in body", ["ZZtopZZ"], f"key={REDACTED} in body"),
    ("Incorrect API key provided: sk-proj-abc123DEF456.", [], f"Incorrect API key provided: {REDACTED}."),
    ("Authorization: Bearer abc.def-123 sent", [], f"Authorization: Bearer {REDACTED} sent"),
    ('{"api_key": "s3cr3t", "n": 1}', [], f'{{"api_key": "{REDACTED}", "n": 1}}'),
    ("x-api-key=hunter2;", [], f"x-api-key={REDACTED};"),
    ("long-secret and long-secret-2", ["long-secret", "long-secret-2"], f"{REDACTED} and {REDACTED}"),
    ("unused stays; sk-1 too short to be a key", ["unused", "", None],
     "unused stays; sk-1 too short to be a key"),
])
def test_redact(text, secrets, expected):
    assert redact(text, secrets) == expected


@pytest.mark.parametrize("outcome, attempts", [("401", 1), ("echo500", 2)])
def test_a_key_echoed_by_the_server_is_never_stored_or_logged(monkeypatch, caplog, outcome, attempts,
                                                             transport):
    key = "not-key-shaped-7f3a9c"  # only the environment's value can catch this one
    monkeypatch.setenv("INTERP_TEST_KEY", key)
    caplog.set_level(logging.DEBUG)
    with FakeLLMServer(lambda m: "hi", script=[outcome] * 5) as srv:
        cfg = LLMConfig(backend="openai", base_url=srv.base_url, api_key_env="INTERP_TEST_KEY",
                        max_retries=1, backoff_s=0.01, timeout_s=2, transport=transport)
        ledger = Ledger()
        llm = OpenAICompatibleLLM(cfg, srv.base_url, ledger)

        async def go():
            try:
                return await llm.generate([{"role": "user", "content": "x"}], max_tokens=3)
            finally:
                await llm.aclose()
        with pytest.raises((LLMError, LLMUnavailable)) as err:  # no answer: 401 and 5xx alike
            asyncio.run(go())
    rows = ledger.drain()
    assert len(rows) == attempts == err.value.attempts
    stored = [err.value.reason, str(err.value), *(r["error"] for r in rows), caplog.text]
    assert all(key not in s for s in stored)
    assert REDACTED in err.value.reason and "Incorrect API key" in err.value.reason
