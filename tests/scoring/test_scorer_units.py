"""Pure parts of the scorers against naive references: simulation parsing, ranking metrics,
Pearson, per-window losses, steering calibration and greedy generation on a toy model."""
from __future__ import annotations

import math

import pytest
import torch

from interp.config import build_config
from interp.scoring.config import ScoreConfig
from interp.scoring.intervention import target_logprobs
from interp.scoring.metrics import pearson, ranking_metrics
from interp.scoring.registry import SCORERS
from interp.scoring.simulation import expected_values, numbered_tokens
from interp.scoring.simulation_words import parse_simulation, simulate
from interp.scoring.stage import _settings
from interp.scoring.steering import calibrate, greedy, mean_kl, steering_hook
from interp.scoring.surprisal import window_losses
from tests.builders import key


def test_registry_names_match_config_literal():
    field = ScoreConfig.model_fields["scorers"]
    allowed = set(field.annotation.__args__[0].__args__)
    assert allowed == set(SCORERS)
    cfg = build_config({"score": {"scorers": list(SCORERS)}})
    assert cfg.score.scorers == tuple(SCORERS)
    with pytest.raises(ValueError, match="score.scorers"):
        build_config({"score": {"scorers": ["telepathy"]}})


@pytest.mark.parametrize("raw,expected", [
    ("[ACTIVATIONS]: cat: 8, dog (3), horse=10", {"cat": 8, "dog": 3, "horse": 10}),
    ("[ACTIVATIONS]: none", {}),
    ("[ACTIVATIONS]: the railway: 7\n\nExplanation: blah 5", {"the railway": 7}),
    ("[ACTIVATIONS]: 1887, 1923", {"1887": 10, "1923": 10}),       # bare words count as 10
    ("[ACTIVATIONS]: cat: 99", {"cat": 10}),                       # clamped to the scale
    ("[ACTIVATIONS]:", None), ("[ACTIVATIONS]:   \n\n", None), ("", None),
])
def test_parse_simulation(raw, expected):
    assert parse_simulation(raw) == expected


def test_simulate_matches_whole_tokens_only():
    tokens = (" The", " weather", " Bever", "ly", " cat", " sat", ",", " cats", " hills")
    sim = simulate(tokens, {"cat": 8, "the": 3, "beverly hills": 5})
    # "the" never fires inside "weather", nor "cat" inside "cats"; sub-word pieces do not match.
    assert sim == [3.0, 0.0, 0.0, 0.0, 8.0, 0.0, 0.0, 0.0, 5.0]
    assert simulate(tokens, {}) == [0.0] * len(tokens)


def _answer_tokens(values):
    """Generated tokens of an all-at-once answer '1: d\n2: d...' with log-probs: the written digit
    at p=0.8 and digit 9 - d at p=0.2."""
    top = []
    for k, d in enumerate(values, 1):
        top += [[(str(k), 0.0)], [(":", 0.0)]]
        top.append([(f" {d}", math.log(0.8)), (f" {9 - d}", math.log(0.2))])
        top.append([("\n", 0.0)])
    return "".join(t[0][0] for t in top), top


def test_all_at_once_simulation_reads_expected_values():
    text, top = _answer_tokens([0, 9, 5])
    assert expected_values(text, top, 3) == pytest.approx([1.8, 7.2, 0.8 * 5 + 0.2 * 4])
    assert expected_values(text, top, 2) is None and expected_values(text, top, 4) is None
    # Without log-probabilities the written digits are the values.
    assert expected_values("[ACTIVATIONS]:\n1: 0\n2: 7", None, 2) == [0.0, 7.0]
    assert expected_values("[ACTIVATIONS]:\n1: 0\n3: 7", None, 2) is None   # a skipped token
    assert expected_values("[ACTIVATIONS]:\n1: 0\n2: 7 maybe", None, 2) is None
    assert numbered_tokens((" a", "\n")) == "1  a\n2 \\n"


def test_ranking_metrics_threshold_at_median():
    preds, m = ranking_metrics([1, 1, 0, 0], [0.9, 0.2, 0.1, 0.3])
    assert preds == [1, 0, 0, 1] and m["auc"] == 0.75 and m["balanced_accuracy"] == 0.5
    preds, m = ranking_metrics([1, 0, 1], [None, 0.1, 0.5])
    assert preds == [None, 0, 1] and m["n_failed"] == 1
    preds, m = ranking_metrics([1, 0], [None, None])
    assert m["n_failed"] == 2 and m["auc"] is None


def test_pearson_against_numpy():
    import numpy as np

    x, y = [1.0, 2.0, 0.0, 5.0], [0.5, 2.5, 0.0, 4.0]
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert pearson([0.0, 0.0, 0.0], y[:3]) == 0.0 and pearson([], []) is None


class ToyLM:
    """Embedding -> hook -> unembedding: logits depend only on the (steerable) residual."""

    def __init__(self, vocab=11, d=6, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.emb, self.unemb = torch.randn(vocab, d, generator=g), torch.randn(d, vocab, generator=g)

    def __call__(self, tokens, hook=None):
        acts = self.emb[tokens]
        acts = acts.cumsum(1) / torch.arange(1, tokens.shape[1] + 1)[None, :, None]  # mixes context
        if hook is not None:
            acts = hook(acts)
        return acts @ self.unemb


def test_window_losses_equal_a_per_window_reference():
    lm = ToyLM()
    prefix, windows = [1, 2, 3], [[4, 5, 6], [7, 8, 9], [10, 0, 1, 2]]
    got = window_losses(lambda t: lm(t), prefix, windows)
    for w, loss in zip(windows, got):
        seq = torch.tensor([prefix + w])
        logp = torch.log_softmax(lm(seq)[0], -1)
        ref = -sum(float(logp[len(prefix) + i - 1, tok]) for i, tok in enumerate(w)) / len(w)
        assert loss == pytest.approx(ref, rel=1e-5)


def test_explanation_logprob_equals_the_window_loss_reference():
    lm = ToyLM()
    contexts, target = [[1, 2, 3], [4, 5], [6]], [7, 8, 9]
    got = target_logprobs(lambda t: lm(t), contexts, target)
    for ctx, lp in zip(contexts, got):
        assert lp == pytest.approx(-len(target) * window_losses(lambda t: lm(t), ctx, [target])[0],
                                   rel=1e-5)


def test_steering_hook_skips_bos_and_calibration_hits_the_target_kl():
    acts = torch.zeros(2, 3, 4)
    d = torch.tensor([1.0, 0, 0, 0])
    out = steering_hook(d, 2.0)(acts)
    assert out[:, 0].abs().sum() == 0 and torch.all(out[:, 1:, 0] == 2.0)
    lm = ToyLM()
    tokens = torch.tensor([[1, 3, 5, 7], [1, 2, 4, 6]])
    direction = torch.nn.functional.normalize(
        torch.randn(6, generator=torch.Generator().manual_seed(1)), dim=0)
    alpha, kl = calibrate(lm, tokens, direction, target=0.5, steps=12)
    clean = torch.log_softmax(lm(tokens)[:, -1], -1)
    assert kl == pytest.approx(mean_kl(lm, tokens, clean, direction, alpha))
    assert kl == pytest.approx(0.5, abs=0.05) and alpha > 0
    assert mean_kl(lm, tokens, clean, direction, 0.0) == pytest.approx(0.0, abs=1e-6)


def test_greedy_matches_a_step_by_step_reference():
    lm = ToyLM()
    tokens = torch.tensor([[1, 3], [2, 4]])
    hook = steering_hook(torch.ones(6) / math.sqrt(6), 3.0)
    got = greedy(lm, tokens, 5, hook)
    for b in range(2):
        seq = tokens[b].tolist()
        for _ in range(5):
            seq.append(int(lm(torch.tensor([seq]), hook)[0, -1].argmax()))
        assert got[b].tolist() == seq[2:]


def test_disabled_scorer_settings_stay_out_of_the_key():
    base = build_config({})
    tuned = build_config({"score": {"intervention": {"target_kl": 2.0},
                                    "surprisal": {"neutral": "x"},
                                    "embedding": {"device": "cpu"}}})
    assert _settings(base) == _settings(tuned)
    assert key(base, "score", explain="e", mine="m") == key(tuned, "score", explain="e", mine="m")
    on = {"scorers": ["detection", "intervention"]}
    a = build_config({"score": on})
    b = build_config({"score": {**on, "intervention": {"target_kl": 2.0}}})
    assert key(a, "score", explain="e", mine="m") != key(b, "score", explain="e", mine="m")
    # Where the embedder runs cannot change a score.
    emb = {"scorers": ["embedding"]}
    assert key(build_config({"score": emb}), "score", explain="e", mine="m") == key(
        build_config({"score": {**emb, "embedding": {"device": "cpu"}}}), "score", explain="e", mine="m")
    # Surprisal and intervention run the subject model: its identity is part of their key.
    c = build_config({"score": on, "model": {"dtype": "bfloat16"}})
    assert key(a, "score", explain="e", mine="m") != key(c, "score", explain="e", mine="m")


def test_a_scorer_exception_is_recorded_not_raised(monkeypatch):
    import asyncio

    from interp.scoring.embedding import Embedding
    from interp.scoring.work import make_work

    class Boom(Embedding):
        needs = ()

        async def run(self, ctx, latent, explanation, examples):
            raise RuntimeError("bad window")

    monkeypatch.setitem(SCORERS, "embedding", Boom())
    cfg = build_config({"score": {"scorers": ["embedding"]}})
    work = make_work(cfg, {3: {"explanation_id": "e3", "text": "x"}}, llm=None, resources=None)
    [row] = asyncio.run(work(3, []))
    assert row["status"] == "error" and "bad window" in row["error"] and row["latent"] == 3
    assert row["balanced_accuracy"] is None and row["predictions"] == []


def test_paper_intervention_scores_the_explanation_logprob_gain(monkeypatch):
    import asyncio

    from interp.mine.examples import Example
    from interp.scoring import intervention
    from interp.scoring.base import ScoreContext
    from interp.scoring.resources import StageResources as Resources

    lm = ToyLM(vocab=11)

    class Tok:
        def encode(self, text, add_special_tokens=False):
            return [2 + ord(c) % 9 for c in text]

    class Model:
        tokenizer = Tok()

        def run_model(self, hookpoint):
            return lambda tokens, hook: lm(tokens, hook)

    class Res(Resources):
        def subject_model(self):
            return Model()

        def token_ids(self):
            return {0: [1, 3, 4], 1: [1, 5, 6]}

    texts = (["a plain text", "more plain"], ["zzz yyy", "zzz"])
    monkeypatch.setattr(intervention, "continuations", lambda *a: texts)
    cfg = build_config({"score": {"scorers": ["intervention"], "intervention": {"n_prompts": 2}}})
    pool = [Example(7, "random", "test", i, -1, i, 0, 0.0, ("x",), (0.0,)) for i in range(2)]
    ctx = ScoreContext(cfg, None, Res(cfg))
    out = asyncio.run(intervention.Intervention().run(ctx, 7, "zzz", pool))
    template = "{}\nThe text above is about:"
    target = Tok().encode(" zzz")
    ref = [target_logprobs(lm, [[1] + Tok().encode(template.format(s))], target)[0] -
           target_logprobs(lm, [[1] + Tok().encode(template.format(c))], target)[0]
           for c, s in zip(*texts)]
    assert [p.prob for p in out.predictions] == pytest.approx(ref)
    assert out.metrics["logprob_gain"] == pytest.approx(sum(ref) / 2)
    assert out.metrics["ci_low"] <= out.metrics["logprob_gain"] <= out.metrics["ci_high"]
    assert out.metrics["n_examples"] == 2 and out.metrics["n_failed"] == 0
