"""Structured outputs in the LLM seam: the request each backend sends for each
llm.structured_outputs setting (a real local HTTP server sees the bodies, both transports; vLLM
through a stub module), the probe of an arbitrary server, the strict parser on what a server
that ignores the constraint answers, and the cache-key identity."""
from __future__ import annotations

import asyncio
import json
import sys
import types

import pytest

from interp.llm import Ledger, LLMUnavailable, OpenAICompatibleLLM, vllm_offline
from interp.llm.config import LLMConfig
from interp.llm.structured import PROBE_ANSWER, PROBE_SCHEMA, AnswerError, labels_schema, parse_labels
from tests.fakeserver import FakeLLMServer

IDS = [4, 11, 7]
LABELS = labels_schema(IDS)
PREFILLED = [{"role": "user", "content": "label these"}, {"role": "assistant", "content": "[RESULT]:"}]


def _labels(ids, value=1) -> str:
    return json.dumps({"labels": {str(i): value for i in ids}})


def honest(schema: dict) -> str:
    """A server that applies the constraint: a valid answer to the schemas in use."""
    if "note" in schema["properties"]:
        return json.dumps(PROBE_ANSWER)
    return json.dumps({"labels": {k: 1 for k in schema["properties"]["labels"]["properties"]}})


# --- what the HTTP client sends ----------------------------------------------------------------

def _cfg(url: str, **kw) -> LLMConfig:
    base = dict(backend="openai", base_url=url, max_retries=2, backoff_s=0.01, timeout_s=2.0)
    return LLMConfig(**(base | kw))


def _ask(llm, *calls):
    async def go():
        try:
            return await asyncio.gather(*[llm.generate(m, max_tokens=40, schema=s, latent=i)
                                          for i, (m, s) in enumerate(calls)])
        finally:
            await llm.aclose()
    return asyncio.run(go())


def test_json_schema_sends_the_constraint_and_drops_the_answer_marker(transport):
    with FakeLLMServer(lambda m: "unused", constrained=honest) as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, transport=transport,
                                       structured_outputs="json_schema"), srv.base_url)
        [r] = _ask(llm, (PREFILLED, LABELS))
    [body] = srv.bodies
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": LABELS, "strict": True}}
    assert body["messages"] == PREFILLED[:1]          # the JSON is the whole answer
    assert r.constrained and r.finish_reason == "stop" and not r.truncated
    assert parse_labels(r.text, IDS) == {4: 1, 11: 1, 7: 1}


def test_off_never_sends_a_constraint(transport):
    with FakeLLMServer(lambda m: " 1, 0, 1", constrained=honest) as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, transport=transport,
                                       structured_outputs="off"), srv.base_url)
        [r] = _ask(llm, (PREFILLED, LABELS))
    [body] = srv.bodies
    assert "response_format" not in body and body["messages"] == PREFILLED
    assert not r.constrained and r.text == "[RESULT]: 1, 0, 1"


def test_no_schema_no_constraint_and_no_probe(transport):
    with FakeLLMServer(lambda m: "hello", constrained=honest) as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, transport=transport), srv.base_url)
        [r] = _ask(llm, (PREFILLED, None))
    assert len(srv.bodies) == 1 and "response_format" not in srv.bodies[0]
    assert not r.constrained and llm.constrains is None  # 'auto', never needed


def test_auto_on_the_embedded_server_sends_without_probing():
    # backend embedded is our own llama.cpp: known to constrain (the slow test below checks it)
    with FakeLLMServer(lambda m: _labels(IDS)) as srv:
        llm = OpenAICompatibleLLM(LLMConfig(backend="embedded", base_url=srv.base_url),
                                  srv.base_url)
        [r] = _ask(llm, (PREFILLED, LABELS))
    assert len(srv.bodies) == 1 and "grammar" in srv.bodies[0]  # no probe request first
    assert r.constrained


def test_auto_probes_an_openai_server_once_outside_the_ledger(transport):
    with FakeLLMServer(lambda m: "free text", constrained=honest) as srv:
        ledger = Ledger()
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, transport=transport), srv.base_url, ledger)
        rs = _ask(llm, *[(PREFILLED, LABELS)] * 3)
    schemas = [b["response_format"]["json_schema"]["schema"] for b in srv.bodies]
    assert schemas == [PROBE_SCHEMA] + [LABELS] * 3
    assert all(r.constrained for r in rs) and llm.constrains is True
    assert sorted(row["latent"] for row in ledger.drain()) == [0, 1, 2]


@pytest.mark.parametrize("probe_outcome", ["ignored", "400"])
def test_auto_falls_back_to_text_on_a_server_without_structured_outputs(probe_outcome, transport):
    script = ["400"] if probe_outcome == "400" else []
    with FakeLLMServer(lambda m: " 1, 0, 1", script=script) as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, transport=transport), srv.base_url)
        rs = _ask(llm, (PREFILLED, LABELS), (PREFILLED, LABELS))
    probe, *asked = srv.bodies
    assert probe["response_format"]["json_schema"]["schema"] == PROBE_SCHEMA
    assert all("response_format" not in b and b["messages"] == PREFILLED for b in asked)
    assert len(asked) == 2 and llm.constrains is False
    assert [r.text for r in rs] == ["[RESULT]: 1, 0, 1"] * 2 and not any(r.constrained for r in rs)


def test_a_probe_that_gets_no_answer_is_an_outage_and_is_asked_again(transport):
    with FakeLLMServer(lambda m: "x", constrained=honest, script=["500"] * 3) as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, transport=transport), srv.base_url)
        with pytest.raises(LLMUnavailable):
            _ask(llm, (PREFILLED, LABELS))
        assert llm.constrains is None
        [r] = _ask(llm, (PREFILLED, LABELS))
    assert r.constrained and srv.requests == ["500"] * 3 + ["ok", "ok"]


def test_a_server_that_ignores_the_constraint_never_yields_a_label(transport):
    # llm.structured_outputs json_schema trusted a server that does not apply it: the answer is
    # free text; the strict parser makes it a parse failure, never a guess.
    with FakeLLMServer(lambda m: "Example 4: 1\nExample 11: 0\nExample 7: 1") as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, transport=transport,
                                       structured_outputs="json_schema"), srv.base_url)
        [r] = _ask(llm, (PREFILLED, LABELS))
    assert r.constrained and "response_format" in srv.bodies[0]
    with pytest.raises(AnswerError, match="not one JSON value"):
        parse_labels(r.text, IDS, truncated=r.truncated)


def test_an_answer_cut_off_at_max_tokens_is_reported_as_such(transport):
    with FakeLLMServer(lambda m: "x", constrained=lambda s: _labels(IDS)[:30],
                       finish_reason="length") as srv:
        llm = OpenAICompatibleLLM(_cfg(srv.base_url, transport=transport,
                                       structured_outputs="json_schema"), srv.base_url)
        [r] = _ask(llm, (PREFILLED, LABELS))
    assert r.truncated
    with pytest.raises(AnswerError, match="cut off at max_tokens"):
        parse_labels(r.text, IDS, truncated=r.truncated)


# --- in-process vLLM, against a stub module -----------------------------------------------------

class _Tokenizer:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt,
                            continue_final_message=False):
        return "|".join(m["content"] for m in messages) + ("<gen>" if add_generation_prompt else "")


class _Engine:
    def __init__(self, model, **options):
        self.calls = []

    def get_tokenizer(self):
        return _Tokenizer()

    def generate(self, prompts, params, use_tqdm=True):
        self.calls += list(zip(prompts, params))
        comp = types.SimpleNamespace(text=_labels(IDS), token_ids=[1], logprobs=None,
                                     finish_reason="stop")
        return [types.SimpleNamespace(prompt_token_ids=[1], outputs=[comp]) for _ in prompts]


@pytest.fixture(params=["structured_outputs", "guided_decoding"])
def stub_vllm(request, monkeypatch):
    """vllm as of the structured-outputs rename, or an older one with GuidedDecodingParams."""
    mod = types.ModuleType("vllm")
    mod.LLM = _Engine
    mod.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)
    params = types.ModuleType("vllm.sampling_params")
    name = "StructuredOutputsParams" if request.param == "structured_outputs" \
        else "GuidedDecodingParams"
    setattr(params, name, lambda **kw: (name, kw))
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", params)
    monkeypatch.setattr(vllm_offline, "_ENGINES", {})
    return request.param, name


@pytest.mark.parametrize("setting", ["auto", "json_schema", "off"])
def test_vllm_offline_sends_the_schema_as_structured_outputs(stub_vllm, setting):
    keyword, cls = stub_vllm
    llm = vllm_offline.VLLMOfflineLLM(LLMConfig(backend="vllm", structured_outputs=setting))
    r = asyncio.run(llm.generate(PREFILLED, max_tokens=40, schema=LABELS))
    plain = asyncio.run(llm.generate(PREFILLED, max_tokens=40))
    (prompt, params), (plain_prompt, plain_params) = llm.engine.calls
    assert not hasattr(plain_params, keyword) and not plain.constrained
    assert plain_prompt == "label these|[RESULT]:" and plain.text.startswith("[RESULT]:")
    if setting == "off":
        assert not hasattr(params, keyword) and not r.constrained
        assert prompt == plain_prompt
        return
    assert getattr(params, keyword) == (cls, {"json": LABELS})
    assert prompt == "label these<gen>"  # the assistant turn is dropped: the JSON is the answer
    assert r.constrained and parse_labels(r.text, IDS) == {4: 1, 11: 1, 7: 1}


# --- cache keys ---------------------------------------------------------------------------------

def test_identity_names_what_the_setting_resolves_to():
    def ident(backend, setting):
        url = "http://h:1/v1" if backend == "openai" else None
        return LLMConfig(backend=backend, base_url=url,
                         structured_outputs=setting).identity()["structured_outputs"]

    for backend, sent in (("embedded", "json_schema:compact"), ("vllm", "json_schema")):
        # auto and json_schema send the same: one key (the embedded server's grammar is compact)
        assert ident(backend, "auto") == ident(backend, "json_schema") == sent
        assert ident(backend, "off") == "off"
    # an arbitrary server: resolved by the probe, per server (base_url and model are in the key)
    assert [ident("openai", s) for s in ("auto", "json_schema", "off")] == \
        ["auto", "json_schema", "off"]


def test_the_embedded_server_gets_llguidance_json_without_whitespace(transport):
    """The embedded llama.cpp server is sent llguidance's JSON grammar with whitespace off (its
    response_format path lets a small model indent: twice the tokens), never response_format."""
    from interp.llm.openai_client import compact_grammar

    with FakeLLMServer(lambda m: _labels(IDS)) as srv:
        llm = OpenAICompatibleLLM(LLMConfig(backend="embedded", transport=transport,
                                            max_retries=0, timeout_s=2.0), srv.base_url)
        [r] = _ask(llm, (PREFILLED, LABELS))
    [body] = srv.bodies
    assert "response_format" not in body and body["messages"] == PREFILLED[:1]
    grammar = body["grammar"]
    assert grammar == compact_grammar(LABELS) and grammar.startswith("%llguidance {}\nstart: %json ")
    sent = json.loads(grammar.split("%json ", 1)[1])
    assert sent.pop("x-guidance") == {"whitespace_flexible": False, "item_separator": ",",
                                      "key_separator": ":"}
    assert sent == LABELS
    assert r.constrained and parse_labels(r.text, IDS) == {4: 1, 11: 1, 7: 1}


def test_the_explainers_answer_schema_is_in_the_explain_key(monkeypatch):
    """The schema is code: a change to it must re-explain (where answers are constrained to it)."""
    from interp.config import build_config
    from interp.explain import stage as explain_stage
    from tests.builders import key

    cfg, off = build_config({}), build_config({"llm": {"structured_outputs": "off"}})
    before, off_before = key(cfg, "explain", mine="m"), key(off, "explain", mine="m")
    real = explain_stage.answer_schema
    monkeypatch.setattr(explain_stage, "answer_schema",
                        lambda prompt, n: real(prompt, n) | {"title": "changed"})
    assert key(cfg, "explain", mine="m") != before
    assert key(off, "explain", mine="m") == off_before   # never sent: not in the key
