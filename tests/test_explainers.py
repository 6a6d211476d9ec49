"""Explainer variants: training sets (top / quantile / mixed) drawn only from the train split,
contrastive and chain-of-thought prompts, the top-token switch, and what each explanation records."""
from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

from interp.config import ConfigError
from interp.explain.format import training_examples, training_negatives
from interp.explain.parse import parse_explanation
from interp.explain.stage import build_messages
from interp.mine.examples import Example
from interp.prompts import load_prompt, parse_prompt
from tests.builders import explain, mine, train_stage
from tests.conftest import tiny_config
from tests.fakeserver import FakeLLMServer


def _ex(kind: str, split: str, rank: int, act: float, q: int = -1) -> Example:
    return Example(0, kind, split, rank, q, rank, 1, act, (f" w{rank}", " x"), (act, 0.0))


EXAMPLES = [_ex("top", "train", i, 10.0 - i) for i in range(5)] + \
    [_ex("quantile", "train", 10 + i, 1.0 + i, q=i % 3) for i in range(6)] + \
    [_ex("quantile", "test", 20 + i, 2.0 + i, q=i % 3) for i in range(6)] + \
    [_ex("random", "train", 30, 0.0), _ex("random", "test", 31, 0.0),
     _ex("hard", "train", 32, 0.0), _ex("hard", "test", 33, 0.0)]


@pytest.mark.parametrize("train_set", ["top", "quantile", "mixed"])
def test_training_sets_never_use_held_out_windows(train_set):
    for n in (1, 4, 8, 20):
        chosen = training_examples(EXAMPLES, train_set, n)
        assert chosen and all(e.split == "train" and e.active for e in chosen)
        assert [e.max_act for e in chosen] == sorted((e.max_act for e in chosen), reverse=True)
        assert len(chosen) == min(n, {"top": 5, "quantile": 6, "mixed": 11}[train_set])


def test_training_set_composition():
    assert [e.rank for e in training_examples(EXAMPLES, "top", 3)] == [0, 1, 2]
    quant = training_examples(EXAMPLES, "quantile", 3)
    assert sorted(e.quantile for e in quant) == [0, 1, 2]         # one per quantile first
    mixed = training_examples(EXAMPLES, "mixed", 4)
    assert sorted(e.kind for e in mixed) == ["quantile", "quantile", "top", "top"]
    neg = training_negatives(EXAMPLES, 4)
    assert [(e.kind, e.split) for e in neg] == [("hard", "train"), ("random", "train")]
    with pytest.raises(ValueError, match="train_set"):
        training_examples(EXAMPLES, "best", 3)


def test_quantile_train_set_needs_mined_train_windows(tmp_path):
    with pytest.raises(ConfigError, match="train_per_quantile"):
        tiny_config(tmp_path, "http://x", explain={"train_set": "quantile"})


def test_prompts_fill_and_top_token_switch(tmp_path):
    cfg = tiny_config(tmp_path, "http://x")
    train, negs = EXAMPLES[:3], training_negatives(EXAMPLES, 2)
    default = build_messages(load_prompt("explain_default"), cfg, train, negs)
    assert 'Marked words, most frequent first: "w0"' in default[-2]["content"]
    off = tiny_config(tmp_path, "http://x", explain={"top_tokens": False})
    bare = build_messages(load_prompt("explain_default"), off, train, negs)[-2]["content"]
    assert "Marked words" not in bare and bare.startswith("Example 1: <<w0>>(10)")
    contrastive = build_messages(load_prompt("explain_contrastive"), cfg, train, negs)[-2]["content"]
    assert "Counter-example 1: w32 x" in contrastive and "Counter-example 2: w30 x" in contrastive
    assert "w33" not in contrastive and "w31" not in contrastive       # held-out negatives hidden
    cot = build_messages(load_prompt("explain_cot"), cfg, train, negs)
    assert cot[-1] == {"role": "assistant", "content": "Marked words:"} and len(cot) == 5
    bad = parse_prompt("bad", "### USER\n$examples $nonsense\n")
    with pytest.raises(ValueError, match=r"'bad'.*nonsense"):
        build_messages(bad, cfg, train, negs)


def test_chain_of_thought_answer_is_read_after_its_one_marker():
    raw = "Marked words: 1945, 1918.\nThey are years of wars.\n[EXPLANATION]: years of wars"
    assert parse_explanation(raw) == "years of wars"
    # a second marker is refused (prompt injection), even one in the reasoning
    assert parse_explanation(raw.replace("They are", "An [EXPLANATION]: names")) is None
    assert parse_explanation("Marked words: a, b.\nThey share nothing.") is None


def _recording_server(seen: list):
    def answer(messages):
        seen.append(messages)
        if len(messages) > 3:   # chain of thought: reasoning, then the marker on the last line
            return " cat, dog.\nThey are pets.\n[EXPLANATION]: pets"
        return "[EXPLANATION]: the marked tokens"
    return FakeLLMServer(answer)


def test_explain_stage_shows_only_train_windows_and_records_settings(tmp_path, collected,
                                                                    monkeypatch):
    from interp.explain import stage as explain_mod

    built = []   # (examples shown, negatives shown, messages) of every explainer request
    real_build = explain_mod.build_messages

    def spy(prompt, cfg, train, negatives, output=None):
        messages = real_build(prompt, cfg, train, negatives, output)
        built.append((train, negatives, messages))
        return messages

    monkeypatch.setattr(explain_mod, "build_messages", spy)
    seen: list = []
    with _recording_server(seen) as srv:
        cfg = tiny_config(tmp_path, srv.base_url,
                          mine={"train_per_quantile": 2, "n_random": 4},
                          explain={"prompt": "explain_contrastive", "train_set": "mixed",
                                   "n_examples": 4, "n_negatives": 2})
        mined = mine(cfg, collected, train_stage(cfg, collected))
        exp = explain(cfg, mined, collected)
        n_contrastive = len(built)
        cot_cfg = tiny_config(tmp_path, srv.base_url, mine={"train_per_quantile": 2, "n_random": 4},
                              explain={"prompt": "explain_cot", "max_tokens": 60})
        cot = explain(cot_cfg, mine(cot_cfg, collected, train_stage(cot_cfg, collected)), collected)
    rows = pq.read_table(exp.path / "explanations.parquet").to_pylist()
    assert rows and all(r["status"] == "ok" for r in rows) and n_contrastive == len(rows)
    kinds = set()
    for train, negatives, messages in built[:n_contrastive]:
        assert all(e.split == "train" and e.active for e in train)
        assert all(e.split == "train" and not e.active for e in negatives) and len(negatives) == 2
        kinds |= {e.kind for e in train}
        user = messages[-2]["content"]
        assert len(re.findall(r"^Example \d+:", user, re.M)) == len(train)
        assert len(re.findall(r"^Counter-example \d+:", user, re.M)) == 2
        # what the server received is exactly what was built
        assert any(m[-2]["content"] == user for m in seen)
    assert kinds == {"top", "quantile"}          # mixed really mixes
    prompt = load_prompt("explain_contrastive")
    assert all(r["prompt_hash"] == prompt.sha and r["prompt_name"] == "explain_contrastive"
               and r["explainer_model"] == cfg.llm.model and r["settings_hash"] for r in rows)
    assert exp.manifest()["config"]["train_set"] == "mixed"
    cot_rows = pq.read_table(cot.path / "explanations.parquet").to_pylist()
    assert cot_rows and all(r["text"] == "pets" and r["raw"].startswith("Marked words:")
                            for r in cot_rows)
