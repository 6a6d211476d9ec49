"""bench/preset_cost.py counts exactly the requests the score stage sends: every message list it
counts (each scorer on the explanation, then the 'shuffled' control) is one the stage posted to
the server, in the one-call form (batch_size 'all', answers constrained to a JSON schema) and in
the batched text form with its assistant prefill."""
from __future__ import annotations

import json

import pytest

from bench.preset_cost import Counter, count_scoring, new_acc
from interp.mine.examples import load_examples
from tests.builders import stage
from tests.conftest import tiny_config
from tests.fakeserver import FakeLLMServer
from tests.scoring.test_one_call import json_oracle
from tests.scoring.test_oracle import _build, oracle


class RecordingTokenizer:
    """Stands in for the tokenizer: one 'token' per word, and every chat it is asked to count."""

    def __init__(self):
        self.chats: list[list[dict]] = []

    def apply_chat_template(self, messages, **kw):
        self.chats.append(messages)
        return " ".join(m["content"] for m in messages).split()

    def encode(self, text, **kw):
        return text.split()


@pytest.mark.parametrize("batch_size,structured,judge", [("all", "json_schema", json_oracle),
                                                        (2, "off", oracle)])
def test_the_bench_counts_the_messages_the_stage_sends(tmp_path, batch_size, structured, judge):
    refs = _build(tmp_path)
    with FakeLLMServer(judge) as srv:
        cfg = tiny_config(tmp_path, srv.base_url, llm={"structured_outputs": structured},
                          score={"batch_size": batch_size, "n_positive": 4, "n_negative": 4,
                                 "controls": ["shuffled"], "control_latents": None, "probes": []})
        stage(cfg, "score", **refs)
        sent = sorted(json.dumps(b["messages"]) for b in srv.bodies)
    import pyarrow.parquet as pq
    explained = {r["latent"]: r["text"] for r in
                 pq.read_table(refs["explain"].path / "explanations.parquet").to_pylist()}
    by_latent = load_examples(refs["mine"].path, refs["collect"].path, sorted(explained))
    tok = RecordingTokenizer()
    acc = new_acc()
    count_scoring(Counter(cfg, tok, None, structured == "json_schema"), by_latent, explained, acc)
    assert sorted(json.dumps(m) for m in tok.chats) == sent
    n_real = sum(acc["calls"]["detection"]) + sum(acc["calls"]["fuzzing"])
    assert n_real + sum(acc["control_calls"]) == len(sent)
    if batch_size == "all":  # one request per scored latent and scorer
        assert set(acc["calls"]["detection"]) == {1}
        assert all(m[-1]["role"] == "user" for m in tok.chats)
    else:
        assert all(m[-1]["role"] == "assistant" for m in tok.chats)  # the prefill is sent
    windows = acc["windows"]["detection"]
    assert windows[1] == 8 * len(acc["calls"]["detection"])  # 4 + 4 windows per latent
