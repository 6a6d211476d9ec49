"""Known-answer probes: built from the run's held-out corpus with the rule's tokens marked, scored
by every probed scorer like a latent, pooled per scorer into judge_checks, and turned into the
three-way verdict: an oracle judge passes them and (its explanations being right) beats shuffled
ones; a coin-flip judge fails them, so its scores are declared meaningless."""
from __future__ import annotations

import random
import re
import zlib

import pyarrow.parquet as pq

from interp.config import build_config
from interp.mine.doc_split import TEST, held_out_documents, window_splits
from interp.scoring.probes import build_probes
from tests.builders import hand_artifacts, keyword_windows, stage
from tests.conftest import tiny_config
from tests.fakeserver import FakeLLMServer

KEYWORDS = ["banana", "guitar", "volcano", "senator", "umbrella", "penguin", "violin", "glacier",
            "harbor", "lantern", "meadow", "tractor"]
FILLER = ["the", "walked", "slowly", "across", "a", "quiet", "street", "before", "evening", "and",
          "then", "turned", "left", "near", "old", "house", "with", "friends", "1914", "Paris"]
WINDOW = 4


def _build(home):
    """Sequences of BOS + 2 windows of 4 words, one document each; per keyword latent 3 train
    top windows, 4 held-out quantile windows and 4 held-out non-activating ones."""
    rng = random.Random(0)
    seqs, examples, explanations = [], [], []
    for latent, kw in enumerate(KEYWORDS):
        for kind, split, n, active in (("top", "train", 3, True), ("quantile", "test", 4, True),
                                       ("random", "test", 4, False)):
            for rank, (toks, acts) in enumerate(keyword_windows(rng, kw, n, active, FILLER)):
                other, _ = keyword_windows(rng, kw, 1, False, FILLER)[0]
                seq_id = len(seqs)
                seqs.append({"seq_id": seq_id, "tokens": list(range(1 + 2 * WINDOW)),
                             "token_str": ["<s>", *toks, *other]})
                examples.append({"latent": latent, "kind": kind, "split": split, "rank": rank,
                                 "quantile": rank % 2 if kind == "quantile" else -1,
                                 "seq_id": seq_id, "start": 1, "max_act": max(acts), "acts": acts})
        explanations.append({"latent": latent, "status": "ok", "explanation_id": f"x{latent}",
                             "text": f"the word {kw}"})
    starts = [i * 2 * WINDOW for i in range(len(seqs))]  # one document per sequence
    return hand_artifacts(home, seqs, examples, explanations, doc_starts=starts)


def rule_oracle(messages):
    """A judge that knows every rule: a quoted word, digits, capital letters, or a keyword."""
    user = messages[-2]["content"] if messages[-1]["role"] == "assistant" else messages[-1]["content"]
    description = re.search(r"Description: (.*)", user).group(1)
    quoted = re.findall(r'"(\w+)"', description)
    named = quoted or [w for w in re.findall(r"\w+", description) if w in KEYWORDS]

    def holds(text: str) -> bool:
        words = text.split()
        if "digits" in description:
            return any(c.isdigit() for c in text)
        if "capital letter" in description:
            return any(w[:1].isupper() for w in words)
        return any(w in named for w in words)
    answers = []
    for ex in re.findall(r"^Example \d+: (.*)$", user, re.MULTILINE):
        shown = " ".join(re.findall(r"<<(.*?)>>", ex)) if "<<" in ex else ex
        answers.append(int(holds(shown)))
    return "[RESULT]: " + ", ".join(map(str, answers))


def coin_flip(messages):
    user = messages[-2]["content"]
    examples = re.findall(r"^Example \d+: (.*)$", user, re.MULTILINE)
    return "[RESULT]: " + ", ".join(str(zlib.crc32(f"{user}|{ex}".encode()) % 2) for ex in examples)


def test_probes_come_from_held_out_windows_with_the_rule_marked(tmp_path):
    refs = _build(tmp_path)
    cfg = build_config({"mine": {"window": WINDOW}, "corpus": {"seq_len": 1 + 2 * WINDOW},
                        "score": {"probe_windows": 5}})
    probes = build_probes(cfg, refs["collect"].path)
    rules = {rule for rule, _ in probes.values()}
    assert rules == {'the word "the"', "digits: numbers, years and dates",
                     "words that start with a capital letter", 'the name "Paris"'}
    n_seq = len(pq.read_table(refs["collect"].path / "sequences.parquet"))
    starts = __import__("torch").tensor([i * 2 * WINDOW for i in range(n_seq)])
    n_tokens = n_seq * 2 * WINDOW
    split = window_splits(starts, held_out_documents(starts, n_tokens, cfg.mine.test_fraction,
                                                     cfg.mine.seed), n_seq * 2, WINDOW, "cpu")
    for pid, (rule, examples) in probes.items():
        assert pid < 0
        pos = [e for e in examples if e.kind == "quantile"]
        neg = [e for e in examples if e.kind == "random"]
        assert len(pos) == len(neg) == 5
        for e in examples:
            assert split[e.seq_id * 2 + (e.start - 1) // WINDOW] == TEST  # held out, as mined
        assert all(any(e.acts) for e in pos) and not any(any(e.acts) for e in neg)
        if rule == 'the word "the"':  # exactly the rule's tokens are marked as activating
            assert all((a > 0) == (t.strip() == "the") for e in pos for t, a in zip(e.tokens, e.acts))


def _score(tmp_path, judge):
    refs = _build(tmp_path)
    with FakeLLMServer(judge) as srv:
        cfg = tiny_config(tmp_path, srv.base_url, corpus={"seq_len": 1 + 2 * WINDOW},
                          mine={"window": WINDOW},
                          score={"n_positive": 4, "n_negative": 4, "batch_size": 4,
                                 "controls": ["shuffled"], "control_latents": None,
                                 "probe_windows": 4})
        ref = stage(cfg, "score", **refs)
    checks = pq.read_table(ref.path / "judge_checks.parquet").to_pylist()
    verdicts = {v["scorer"]: v for v in pq.read_table(ref.path / "verdicts.parquet").to_pylist()}
    return ref, checks, verdicts


def test_an_oracle_judge_passes_the_probes_and_beats_shuffled(tmp_path):
    ref, checks, verdicts = _score(tmp_path, rule_oracle)
    for scorer in ("detection", "fuzzing"):
        pooled = next(c for c in checks if c["scorer"] == scorer and c["probe"] == "all")
        assert pooled["passed"] and pooled["value"] == 1.0 and pooled["n_valid"] == 4 * 8
        assert len([c for c in checks if c["scorer"] == scorer]) == 5  # 4 probes + pooled
        v = verdicts[scorer]
        assert v["case"] == "informative" and v["probes_passed"] and v["informative"]
        assert v["verdict"].startswith("the judge passes the known-answer probes")
    rows = pq.read_table(ref.path / "scores.parquet").to_pylist()
    probe_rows = [r for r in rows if r["control"] == "probe"]
    assert {r["latent"] for r in probe_rows} == {-1, -2, -3, -4}
    # probes never enter the scores of the explanations or the controls' lift
    summary = __import__("json").loads((ref.path / "summary.json").read_text())
    assert summary["scorers"]["detection"]["n_latents"] == len(KEYWORDS)


def test_a_coin_flip_judge_fails_the_probes(tmp_path):
    _ref, checks, verdicts = _score(tmp_path, coin_flip)
    for scorer in ("detection", "fuzzing"):
        pooled = next(c for c in checks if c["scorer"] == scorer and c["probe"] == "all")
        assert pooled["passed"] is False
        assert verdicts[scorer]["case"] == "judge_fails_probes"
        assert "say nothing about the explanations" in verdicts[scorer]["verdict"]


def test_word_rules_mark_whole_words_only():
    """A name's first word piece is not the name, and ' the' + 'ory' is not the word "the"."""
    from collections import Counter

    from interp.scoring.probes import RULES, _whole_word

    toks = (" Aber", "deen", " is", " the", "ory", " of", " the", " Aber", ".")
    assert [_whole_word(toks, i) for i in range(len(toks))] == [
        False, False, True, False, False, True, True, True, False]
    the = RULES["the"](Counter())
    assert [i for i in range(len(toks)) if the.matches(toks, i)] == [6]
    counts = Counter(t.strip() for i, t in enumerate(toks) if _whole_word(toks, i))
    name = RULES["proper_noun"](counts + Counter({"Aberdeen": 0}))
    assert name.description == 'the name "Aber"'
    assert [i for i in range(len(toks)) if name.matches(toks, i)] == [7]
