"""Surprisal scorer: how much reading the explanation first lowers the subject model's loss on a
window, for activating versus non-activating windows. No LLM calls.

Each held-out window (detection's set) is scored twice by the subject model: after the prefix
`prompts/score_surprisal.md` filled with the explanation, and after the same prefix filled with
`score.surprisal.neutral`. Score = mean per-token loss (nats) with the neutral prefix minus with
the explanation; a good explanation helps more where the latent fires, so AUC > 0.5. Balanced
accuracy & co. threshold the score at the latent's median.
"""
from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from interp.config_base import _Strict
from interp.mine.examples import Example
from interp.prompts import load_prompt
from interp.scoring.base import Outcome, Prediction, ScoreContext, Scorer
from interp.scoring.metrics import ranking_metrics
from interp.scoring.windows import detection_items

_BATCH = 8  # windows per forward pass: logits are [batch, tokens, vocab] floats


@torch.inference_mode()
def window_losses(run, prefix: list[int], windows: list[list[int]]) -> list[float]:
    """Mean next-token loss over each window's tokens when it follows `prefix`.

    run(tokens [B, T]) -> logits [B, T, V]. Windows of equal length are batched together.
    """
    out: dict[int, float] = {}
    by_len: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        by_len.setdefault(len(w), []).append(i)
    p = len(prefix)
    for idx in by_len.values():
        for b in range(0, len(idx), _BATCH):
            part = idx[b:b + _BATCH]
            tokens = torch.tensor([prefix + windows[i] for i in part])
            logits = run(tokens)[:, p - 1:-1].float()
            nll = -F.log_softmax(logits, -1).gather(-1, tokens[:, p:, None].to(logits.device))
            for i, v in zip(part, nll.squeeze(-1).mean(1).tolist()):
                out[i] = v
    return [out[i] for i in range(len(windows))]


def prefix_ids(tokenizer, text: str, bos: int | None) -> list[int]:
    ids = tokenizer.encode(text + "\n", add_special_tokens=False)
    return ([bos] if bos is not None else []) + ids


class SurprisalConfig(_Strict):
    """Surprisal: how much the explanation, as a prefix, lowers the subject model's loss."""

    prompt: str = Field("score_surprisal", description="Prefix template ($explanation); its "
                        "USER text precedes each window.")
    neutral: str = Field("some text", description="What fills the prefix instead of the "
                         "explanation for the baseline loss.")


class Surprisal(Scorer):
    name = "surprisal"
    Config = SurprisalConfig
    headline = "auc"
    uses_llm = False
    uses_subject_model = True

    def prompts(self, score: Any) -> tuple[str, ...]:
        return (score.surprisal.prompt,)

    def _scores(self, ctx: ScoreContext, explanation: str, examples: list[Example]) -> list[float]:
        res = ctx.resources
        model = res.subject_model()
        run = model.run_model(ctx.cfg.model.hookpoint)

        def logits(tokens):
            return run(tokens, None)
        template = load_prompt(self.prompts(ctx.cfg.score)[0])
        windows = [res.window_ids(e) for e in examples]
        # The collected sequences' first token is the BOS the activations were computed with.
        bos = res.token_ids()[examples[0].seq_id][0] if examples[0].start > 0 else None
        text = {k: template.messages(explanation=v)[-1]["content"]
                for k, v in (("exp", explanation), ("neutral", ctx.cfg.score.surprisal.neutral))}
        with_exp = window_losses(logits, prefix_ids(model.tokenizer, text["exp"], bos), windows)
        neutral = window_losses(logits, prefix_ids(model.tokenizer, text["neutral"], bos), windows)
        return [n - e for n, e in zip(neutral, with_exp)]

    async def run(self, ctx: ScoreContext, latent: int, explanation: str,
                  examples: list[Example]) -> Outcome:
        cfg = ctx.cfg.score
        rng = random.Random(f"{cfg.seed}:{latent}:surprisal")
        items = detection_items(examples, cfg.n_positive, cfg.n_negative, rng)
        by_pos = {(e.seq_id, e.start): e for e in examples}
        chosen = [by_pos[(it.seq_id, it.start)] for it in items]
        scores = await ctx.compute(self._scores, ctx, explanation, chosen) if items else []
        preds, metrics = ranking_metrics([it.label for it in items], scores)
        return Outcome([Prediction(it.seq_id, it.start, it.quantile, it.label, p, s)
                        for it, p, s in zip(items, preds, scores)], metrics,
                       ctx.cfg.model.name, load_prompt(self.prompts(ctx.cfg.score)[0]).sha)
