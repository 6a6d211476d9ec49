"""One request per latent and scorer (score.batch_size 'all'): every held-out window of a latent
in one prompt, named by an id, the answer one JSON object. The schema is sent where the server
constrains answers, an oracle answering by ids scores 1.0 with one call per latent and scorer,
an answer that is not that JSON is a counted failure, and the ledger says what each call was for."""
from __future__ import annotations

import json
import math
import re

import duckdb
import pyarrow.parquet as pq
import pytest

from storage.catalog import publish
from tests.builders import key, stage
from tests.conftest import tiny_config
from tests.fakeserver import FakeLLMServer
from tests.scoring.test_oracle import KEYWORDS, NO_POSITIVES, _build


def _user(messages) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def json_oracle(messages):
    """Knows which keyword each latent is about; answers every scorer's one-call JSON."""
    user = _user(messages)
    named = set(re.findall(r"\w+", (re.search(r"Description: (.*)", user) or [None, ""])[1]))
    if "intruders" in user:
        rounds = re.split(r"^Round (R\d+):$", user, flags=re.M)[1:]
        answer = {}
        for key, body in zip(rounds[::2], rounds[1::2]):
            examples = re.findall(r"^Example (\d+): (.*)$", body, re.M)
            answer[key] = next(int(i) for i, t in examples
                               if not set(" ".join(re.findall(r"<<(.*?)>>", t)).split()) & set(KEYWORDS))
        return json.dumps({"intruders": answer})
    if '"activations"' in user:
        texts = re.findall(r"^Text (\w+): (.*)$", user, re.M)
        return json.dumps({"activations": {i: [9 if t.strip() in named & set(KEYWORDS) else 0
                                               for t in body.split(" | ")]
                                           for i, body in texts}})
    examples = re.findall(r"^Example (\w+): (.*)$", user, re.M)
    labels = {}
    for i, text in examples:
        shown = " ".join(re.findall(r"<<(.*?)>>", text)) if "<<" in text else text
        labels[i] = int(bool(set(shown.split()) & named & set(KEYWORDS)))
    return json.dumps({"labels": labels})


def _score(tmp_path, answer, structured="off", scorers=("detection", "fuzzing")):
    refs = _build(tmp_path)
    with FakeLLMServer(answer) as srv:
        cfg = tiny_config(tmp_path, srv.base_url, llm={"structured_outputs": structured},
                          score={"scorers": list(scorers), "batch_size": "all", "n_positive": 4,
                                 "n_negative": 4, "controls": ["shuffled"], "probes": [],
                                 "control_latents": 3})
        ref = stage(cfg, "score", **refs)
        bodies = list(srv.bodies)
    return ref, pq.read_table(ref.path / "scores.parquet").to_pylist(), bodies


@pytest.mark.parametrize("structured", ["off", "json_schema"])
def test_one_call_per_latent_and_scorer(tmp_path, structured):
    ref, rows, bodies = _score(tmp_path, json_oracle, structured)
    real = [r for r in rows if r["control"] is None and r["latent"] != NO_POSITIVES]
    assert len(real) == 2 * len(KEYWORDS)
    assert all(r["status"] == "ok" and r["value"] == 1.0 and r["n_valid"] == 8 for r in real)
    calls = pq.read_table(ref.path / "llm_calls.parquet").to_pylist()
    per = {}
    for c in calls:
        per.setdefault(c["purpose"], []).append(c["latent"])
    # one request per latent and scorer; controls on 3 latents, one request each again
    assert sorted(per) == ["control:detection", "control:fuzzing", "detection", "fuzzing"]
    assert sorted(per["detection"]) == sorted(set(per["detection"])) and len(per["detection"]) == 12
    assert len(per["control:detection"]) == 3
    sent = [b.get("response_format") for b in bodies]
    if structured == "json_schema":  # the schema names exactly the ids shown, each once
        assert all(f and f["type"] == "json_schema" for f in sent)
        body = bodies[0]
        ids = re.findall(r"^Example (\w+):", _user(body["messages"]), re.M)
        labels = sent[0]["json_schema"]["schema"]["properties"]["labels"]
        assert list(labels["properties"]) == ids and labels["required"] == ids
        assert labels["additionalProperties"] is False
    else:
        assert not any(sent)


def test_ids_are_not_positions(tmp_path):
    _ref, _rows, bodies = _score(tmp_path, json_oracle)
    for body in bodies:
        ids = re.findall(r"^Example (\w+):", _user(body["messages"]), re.M)
        assert len(set(ids)) == len(ids) and all(len(i) == 1 and i.isupper() for i in ids)
        assert ids != sorted(ids) and ids != [str(i) for i in range(1, len(ids) + 1)]


@pytest.mark.parametrize("answer", ["[RESULT]: 1, 0, 1, 0, 1, 0, 1, 0",
                                    '{"labels": {"1": 1}}',
                                    'Sure! {"labels": {}}'])
def test_an_answer_that_is_not_the_json_is_a_failure(tmp_path, answer):
    _ref, rows, _bodies = _score(tmp_path, lambda messages: answer)
    real = [r for r in rows if r["control"] is None and r["latent"] != NO_POSITIVES]
    assert real and all(r["status"] == "failed" and r["n_valid"] == 0 and r["value"] is None
                        for r in real)
    assert all("unparseable" in r["error"] for r in real)


def test_intruder_and_simulation_in_one_call(tmp_path):
    ref, rows, _bodies = _score(tmp_path, json_oracle, scorers=("intruder", "simulation"))
    real = [r for r in rows if r["control"] is None and r["latent"] != NO_POSITIVES]
    intruder = [r for r in real if r["scorer"] == "intruder"]
    assert intruder and all(r["status"] == "ok" and r["value"] == 1.0 and r["n_valid"] == 5
                            for r in intruder)
    sim = [r for r in real if r["scorer"] == "simulation"]
    assert sim and all(r["status"] == "ok" and r["value"] == pytest.approx(1.0) for r in sim)
    calls = pq.read_table(ref.path / "llm_calls.parquet").to_pylist()
    for scorer in ("intruder", "simulation"):
        latents = [c["latent"] for c in calls if c["purpose"] == scorer]
        assert len(latents) == len(set(latents)) == len(KEYWORDS)


def test_cost_per_purpose_is_one_query(tmp_path):
    ref, _rows, _bodies = _score(tmp_path, json_oracle)
    publish(tmp_path, {"score": ref.key}, [])
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
    got = dict(con.execute("SELECT purpose, count(*) FROM llm_calls GROUP BY ALL").fetchall())
    assert got == {"detection": 12, "fuzzing": 12, "control:detection": 3, "control:fuzzing": 3}


def test_label_probabilities_follow_the_generated_tokens_not_the_top_alternative():
    """Under a constraint the generated token is often not the model's top pick (SmolLM2's top
    after `{"` was `id`, not `labels`): P(1) is read where the *generated* text has `"<id>":`."""
    from interp.scoring.classifier import json_label_probs

    gen = ['{"', "labels", '":{"', "4", "2", '":', "1", ',"', "1", "7", '":', "0", "}}"]
    top = [[(t, -0.1)] for t in gen]
    top[4] = [("3", -0.5), ("2", -1.0)]                # the unconstrained favourite differs
    top[6] = [("0", math.log(0.2)), ("1", math.log(0.6)), ("x", -3.0)]
    top[11] = [("2", math.log(0.5)), ("0", math.log(0.3)), ("1", math.log(0.1))]
    probs = json_label_probs(top, [42, 17], gen)
    assert probs == pytest.approx({42: 0.75, 17: 0.25})
    # rebuilt from the top picks instead, the text names id 43 and the labels are lost
    assert json_label_probs(top, [42, 17]) == {}
    top[6] = [("x", -0.1)]                               # neither 0 nor 1 among alternatives
    assert 42 not in json_label_probs(top, [42, 17], gen)
    # the default ids are capital letters, one token each
    gen = ['{"', "labels", '":{"', "K", '":', "1", ',"', "D", '":', "0", "}}"]
    top = [[(t, -0.1)] for t in gen]
    top[5] = [("1", math.log(0.9)), ("0", math.log(0.1))]
    assert json_label_probs(top, ["K", "D"], gen) == pytest.approx({"K": 0.9, "D": 0.0})


def test_a_prompt_edited_during_a_run_is_not_sent_under_the_old_key(tmp_path, monkeypatch):
    """The score stage hashes its prompts into its key before it runs: a prompt file edited while
    it runs changes nothing it sends (the edit belongs to the next run, under a new key)."""
    import shutil
    import threading

    import interp.prompts
    from interp.prompts import _SOURCE_PROMPTS, load_prompt

    prompts = tmp_path / "prompts"
    shutil.copytree(_SOURCE_PROMPTS, prompts)
    monkeypatch.setattr(interp.prompts, "_SOURCE_PROMPTS", prompts)
    template = prompts / "score_detection_all.md"
    before = load_prompt("score_detection_all").sha

    edited, lock = template.read_text().replace("### USER", "### USER\nEDITED", 1), threading.Lock()

    def edit_then_answer(messages):  # the server answers in several threads: edit once
        with lock:
            if "EDITED" not in template.read_text():
                template.write_text(edited)
        return json_oracle(messages)

    refs = _build(tmp_path)
    with FakeLLMServer(edit_then_answer) as srv:
        cfg = tiny_config(tmp_path, srv.base_url, score={
            "scorers": ["detection"], "batch_size": "all", "n_positive": 4, "n_negative": 4,
            "controls": [], "probes": []})
        inputs = {name: r.key for name, r in refs.items()}
        planned = key(cfg, "score", **inputs)
        ref = stage(cfg, "score", **refs)
        bodies = list(srv.bodies)
    assert len(bodies) > 1 and "EDITED" in template.read_text()
    assert not any("EDITED" in m["content"] for b in bodies for m in b["messages"])
    assert ref.key == planned  # the key of the prompt it sent
    # outside a build the edited file is read: the next run has a key of its own
    assert load_prompt("score_detection_all").sha != before and key(cfg, "score", **inputs) != planned
