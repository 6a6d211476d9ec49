"""The score stage's per-latent work: every configured scorer on the latent's explanation, the
controls on a seeded sample of latents, and the known-answer probes (pseudo-latents < 0)."""
from __future__ import annotations

import functools
import logging
import random
from typing import Any

from interp.llm.base import LLMUnavailable
from interp.mine.examples import Example
from interp.resumable import in_order
from interp.scoring.base import Outcome, ScoreContext, unscorable_reason
from interp.scoring.controls import PROBE, control_texts, derangement
from interp.scoring.metrics import classification_metrics
from interp.scoring.registry import SCORERS
from interp.scoring.rows import score_row

log = logging.getLogger(__name__)


def controlled_latents(cfg: Any, latents: list[int]) -> set[int]:
    """The seeded sample of score.control_latents latents that the controls run on."""
    n = cfg.score.control_latents
    if n is None or n >= len(latents):
        return set(latents)
    return set(random.Random(f"{cfg.score.seed}:controls").sample(sorted(latents), n))


async def _outcome(ctx: ScoreContext, name: str, latent: int, text: str,
                   examples) -> tuple[Outcome, str | None]:
    """Scorer `name`'s outcome, or an empty one and the error when the scorer raised: one bad
    latent must not stop the stage. No answer (LLMUnavailable) is not a score: it is raised, and
    the latent stays pending for the next run."""
    try:
        return await SCORERS[name].run(ctx, latent, text, examples), None
    except LLMUnavailable:
        raise
    except Exception as err:  # noqa: BLE001 - recorded in the row; the stage goes on
        log.exception("scorer %s failed on latent %d", name, latent)
        return Outcome([], classification_metrics([], []), name), f"{type(err).__name__}: {err}"[:300]


def make_work(cfg: Any, explanations: dict[int, dict], llm, resources,
              pool: list[Example] | None = None, score_key: str = ""):
    """work(latent, examples) -> the latent's score rows: one per configured scorer, one per
    control of each scorer in score.control_scorers (on the controlled latents), and for a probe
    (latent < 0, its 'explanation' the rule) one per probed scorer. `pool`: held-out activating
    windows of other latents, for controls that replace a latent's windows (intruder);
    `score_key`: the stage's artifact key (in every row's id)."""
    settings_hash = cfg.score.settings_hash()
    real = sorted(l for l in explanations if l >= 0)
    other = derangement(real, cfg.score.seed) if "shuffled" in cfg.score.controls else {}
    shuffled = {l: explanations[o]["text"] for l, o in other.items()}
    controlled = controlled_latents(cfg, real)

    async def judge(name: str, latent: int, exp: dict, text: str, examples, control: str | None,
                    control_text: str | None = None):
        ctx = ScoreContext(cfg, llm, resources, purpose=name if control is None
                           else f"{control}:{name}" if control == PROBE else f"control:{name}")
        extra = {"control": control, "control_text": control_text, "score_key": score_key}
        out, error = await _outcome(ctx, name, latent, text, examples)
        row = score_row(cfg, exp, latent, name, out, settings_hash, **extra)
        return row if error is None else row | {"status": "error", "error": error}

    def steps_for(name: str, latent: int, exp: dict, examples: list[Example]) -> list:
        if latent < 0:
            return [functools.partial(judge, name, latent, exp, exp["text"], examples, PROBE,
                                      exp["text"])] if SCORERS[name].probed else []
        steps = [functools.partial(judge, name, latent, exp, exp["text"], examples, None)]
        if name not in cfg.score.controlled_scorers() or latent not in controlled:
            return steps
        rng = random.Random(f"{cfg.score.seed}:{latent}:{name}:control")
        designs = tuple(c for c in cfg.score.controls if c in SCORERS[name].controls)
        for control, text in control_texts(designs, latent, shuffled, examples).items():
            stand_in = SCORERS[name].control_input(control, text, examples, pool or [], rng)
            if stand_in is not None:  # (explanation judged, windows, what control_text records)
                steps.append(functools.partial(judge, name, latent, exp, *stand_in[:2], control,
                                               stand_in[2]))
        return steps

    async def work(latent: int, examples) -> list[dict]:
        exp = explanations[latent]
        rows, steps = [], []
        for name in cfg.score.scorers:
            reason = unscorable_reason(SCORERS[name].needs, examples)
            if reason:  # recorded, never scored on what is left (e.g. negatives only)
                if latent >= 0 or SCORERS[name].probed:
                    empty = Outcome([], classification_metrics([], []), name)
                    rows.append(score_row(cfg, exp, latent, name, empty, settings_hash,
                                          control=PROBE if latent < 0 else None,
                                          control_text=exp["text"] if latent < 0 else None,
                                          unscorable=reason, score_key=score_key))
                continue
            steps += steps_for(name, latent, exp, examples)
        # Scorers one after another (each keeps its prompt prefix hot), all at once in the tail.
        return rows + await in_order(steps)
    return work
