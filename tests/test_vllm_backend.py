"""The in-process vLLM backend's adapter, against a tiny fake `vllm` module injected into
sys.modules. vLLM itself cannot be installed here: these tests check the import guard, the
request/response mapping (chat template, prefill, sampling params, log-probs, token counts),
batching and the ledger -- not vLLM."""
from __future__ import annotations

import asyncio
import math
import sys
import types
from dataclasses import dataclass

import pyarrow.parquet as pq
import pytest

from interp.llm import LLMError, llm_endpoint, open_llm, vllm_offline
from interp.llm.config import LLMConfig


@dataclass
class Logprob:
    logprob: float
    rank: int
    decoded_token: str


class FakeTokenizer:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt,
                            continue_final_message=False):
        assert tokenize is False
        text = "".join(f"<{m['role']}>{m['content']}" + ("" if continue_final_message and i ==
                       len(messages) - 1 else "</>") for i, m in enumerate(messages))
        return text + ("<assistant>" if add_generation_prompt else "")


class FakeEngine:
    """Answers '<n words>' for each prompt; records the calls."""

    def __init__(self, model, **options):
        self.model, self.options, self.calls = model, options, []

    def get_tokenizer(self):
        return FakeTokenizer()

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((list(prompts), list(params)))
        if any("EXPLODE" in p for p in prompts):
            raise RuntimeError("CUDA out of memory")
        outs = []
        for p, sp in zip(prompts, params):
            lps = None
            if sp.logprobs:
                lps = [{5: Logprob(math.log(0.3), 2, "0"), 7: Logprob(math.log(0.7), 1, "1")}]
            comp = types.SimpleNamespace(text=f" {len(p.split())} words", token_ids=[1, 2, 3],
                                         logprobs=lps)
            outs.append(types.SimpleNamespace(prompt_token_ids=list(range(len(p))), outputs=[comp]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM = FakeEngine
    mod.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setattr(vllm_offline, "_ENGINES", {})
    return mod


def _cfg(**kw) -> LLMConfig:
    return LLMConfig(backend="vllm", model="org/some-model", **kw)


def test_import_guard_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ImportError, match=r"interp\[vllm\].*vllm serve"):
        with open_llm(_cfg()):
            pass
    with pytest.raises(ValueError, match="open_llm"):
        with llm_endpoint(_cfg()):
            pass


def test_mapping_prefill_logprobs_and_ledger(fake_vllm):
    with open_llm(_cfg(vllm_options={"max_model_len": 2048})) as llm:
        engine = llm.engine
        assert engine.model == "org/some-model" and engine.options == {"max_model_len": 2048}
        msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                {"role": "assistant", "content": "[RESULT]:"}]
        r = asyncio.run(llm.generate(msgs, max_tokens=3, logprobs=2, stage="score", latent=7))
    prompts, params = engine.calls[0]
    assert prompts == ["<system>s</><user>u</><assistant>[RESULT]:"]   # continued, not closed
    assert (params[0].max_tokens, params[0].temperature, params[0].logprobs) == (3, 0.0, 2)
    assert r.text == "[RESULT]: 1 words"
    assert (r.prompt_tokens, r.completion_tokens, r.attempts) == (len(prompts[0]), 3, 1)
    assert [t for t, _ in r.top_logprobs[0]] == ["1", "0"]
    assert r.top_logprobs[0][0][1] == pytest.approx(math.log(0.7))
    [row] = llm.ledger.drain()
    assert (row["stage"], row["latent"], row["status"], row["completion_tokens"]) == ("score", 7, "ok", 3)


def test_concurrent_requests_are_batched_and_errors_recorded(fake_vllm):
    cfg = _cfg(concurrency=4, assistant_prefill="off")
    with open_llm(cfg) as llm:
        async def many():
            jobs = [llm.generate([{"role": "user", "content": "x " * i}], max_tokens=5)
                    for i in range(1, 7)]
            return await asyncio.gather(*jobs)
        rs = asyncio.run(many())
        assert llm.batches == [4, 2]
        # answers come back to the right caller: prompt i has i x's plus the two role tags
        assert [r.text for r in rs] == [f" {i + 1} words" for i in range(1, 7)]
        assert all(r.top_logprobs is None for r in rs)
        with pytest.raises(LLMError, match="out of memory"):
            asyncio.run(llm.generate([{"role": "user", "content": "EXPLODE"}], max_tokens=1))
        statuses = [r["status"] for r in llm.ledger.drain()]
        assert statuses == ["ok"] * 6 + ["error"]
    # a second client of the same model reuses the loaded engine
    with open_llm(cfg) as again:
        assert again.engine is llm.engine


def test_explain_stage_runs_on_the_vllm_backend(tmp_path, collected, fake_vllm):
    from tests.builders import explain, mine, train_stage
    from tests.conftest import tiny_config

    cfg = tiny_config(tmp_path, "http://unused", llm={"backend": "vllm", "base_url": None,
                                                      "model": "org/some-model"})
    mined = mine(cfg, collected, train_stage(cfg, collected))
    exp = explain(cfg, mined, collected)
    rows = pq.read_table(exp.path / "explanations.parquet").to_pylist()
    assert rows and all(r["status"] == "ok" and r["text"].endswith("words") for r in rows)
    calls = pq.read_table(exp.path / "llm_calls.parquet").to_pylist()
    assert len(calls) == len(rows) and all(c["model"] == "org/some-model" for c in calls)
