"""LLM calls per latent of a config, from each scorer's own count (interp/scoring/registry.py):
the presets' cost table (`interp presets`, README, bench/preset_cost.py)."""
from __future__ import annotations

from typing import Any

from interp.scoring.registry import SCORERS


def llm_calls(cfg: Any) -> dict[str, int | None]:
    """LLM calls per latent by step of a run config (an upper bound: a latent with fewer held-out
    windows than asked for needs fewer). None for a scorer whose count is not a fixed number of
    judge calls. 'controls' is per controlled latent (score.control_latents of them), 'probes'
    per run (the known-answer probes), the others per explained latent."""
    s = cfg.score
    out: dict[str, int | None] = {"explain": 1}
    out.update({name: SCORERS[name].calls(s) for name in s.scorers})
    controlled = [None if SCORERS[n].calls(s) is None else
                  SCORERS[n].calls(s) * len(set(s.controls) & set(SCORERS[n].controls))
                  for n in s.controlled_scorers()]
    out["controls"] = None if None in controlled else sum(controlled)
    # A probe shows score.probe_windows windows of each class, not n_positive + n_negative.
    p = s.model_copy(update={"n_positive": s.probe_windows, "n_negative": s.probe_windows})
    probed = [SCORERS[n].calls(p) for n in s.scorers if SCORERS[n].probed]
    out["probes"] = None if None in probed else len(s.probes) * sum(probed)
    return out


def describe_calls(cfg: Any) -> str:
    """The calls per latent as one sentence (`interp presets`)."""
    calls = llm_calls(cfg)
    ctrl, probes = calls.pop("controls"), calls.pop("probes")
    steps = ", ".join(f"{k} {'?' if v is None else v}" for k, v in calls.items())
    return (f"LLM calls per latent: {steps}; controls +{ctrl} per controlled latent; "
            f"probes +{probes} per run.")
