"""Controls: is the judge telling explanations apart at all?

Each run scores, besides the LLM's explanation, two stand-ins on the same windows with the same
judge: `shuffled` (another scored latent's explanation, a seeded derangement, so it never is the
latent's own) and `top_tokens` (no LLM: the latent's most frequent activating train tokens). The
lift of the real explanation over a control is the paired mean difference of the headline metric
over the latents scored both ways, with a bootstrap interval over latents; `informative` means
the interval lies above 0. A judge that cannot beat shuffled explanations carries no information.
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Any

from interp.mine.examples import Example
from interp.scoring.stats import N_BOOT, mean_interval

CONTROLS = ("shuffled", "top_tokens")


def derangement(latents: list[int], seed: int) -> dict[int, int]:
    """latent -> another latent, a seeded random permutation without fixed points ({} for < 2).

    Sattolo's algorithm draws a single cycle, so no latent keeps its own explanation, and the
    result depends only on the set of latents and the seed (resumable, shardable).
    """
    order = sorted(latents)
    if len(order) < 2:
        return {}
    perm = list(order)
    rng = random.Random(f"{seed}:shuffled")
    for i in range(len(perm) - 1, 0, -1):
        j = rng.randrange(i)
        perm[i], perm[j] = perm[j], perm[i]
    return dict(zip(order, perm))


def top_tokens_text(examples: list[Example], n: int = 5) -> str | None:
    """A non-LLM explanation: the latent's most frequent activating tokens in its train windows
    (what the explainer saw), e.g. 'the tokens "cat", "dog"'; None if it saw none."""
    counts = Counter(t.strip() for e in examples if e.split == "train" and e.active
                     for t, a in zip(e.tokens, e.acts) if a > 0 and t.strip())
    if not counts:
        return None
    return "the tokens " + ", ".join(f'"{t}"' for t, _ in counts.most_common(n))


def control_texts(controls: tuple[str, ...], latent: int, shuffled: dict[int, str],
                  examples: list[Example]) -> dict[str, str]:
    """control name -> the explanation text it stands in with, for one latent."""
    out = {}
    if "shuffled" in controls and latent in shuffled:
        out["shuffled"] = shuffled[latent]
    if "top_tokens" in controls and (text := top_tokens_text(examples)) is not None:
        out["top_tokens"] = text
    return out


def _values(rows: list[dict[str, Any]], scorer: str, control: str | None) -> dict[int, float]:
    return {r["latent"]: r["value"] for r in rows if r["scorer"] == scorer
            and r["control"] == control and r["status"] == "ok" and r["value"] is not None}


def control_lifts(rows: list[dict[str, Any]], *, seed: int = 0,
                  n_boot: int = N_BOOT) -> list[dict[str, Any]]:
    """One row per (scorer, control) present in `rows` (scores.parquet rows): the lift of the
    real explanation over the control, paired over latents, with its bootstrap interval."""
    out = []
    pairs = sorted({(r["scorer"], r["control"]) for r in rows if r["control"] is not None})
    for scorer, control in pairs:
        real, ctrl = _values(rows, scorer, None), _values(rows, scorer, control)
        both = sorted(set(real) & set(ctrl))
        lift, lo, hi = mean_interval([real[l] - ctrl[l] for l in both], seed=(seed, scorer, control),
                                     n_boot=n_boot)
        metric = next(r.get("metric") for r in rows if r["scorer"] == scorer)
        row = {"scorer": scorer, "control": control, "metric": metric,
               "n_latents": len(both),
               "real_mean": sum(real[l] for l in both) / len(both) if both else None,
               "control_mean": sum(ctrl[l] for l in both) / len(both) if both else None,
               "lift": lift, "ci_low": lo, "ci_high": hi,
               "informative": lo is not None and lo > 0}
        out.append(row | {"verdict": verdict(row)})
    return out


def verdict(row: dict[str, Any]) -> str:
    """One sentence saying whether the judge tells explanations from the control."""
    if not row.get("n_latents"):
        return f"no latent was scored with both its explanation and the {row['control']} control"
    span = f"{row['lift']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
    if row["control"] == "shuffled":
        if row["informative"]:
            return f"explanations beat shuffled ones by {span}"
        return ("the judge cannot tell explanations from shuffled ones: these scores carry no "
                f"information (lift {span})")
    if row["informative"]:
        return f"explanations beat the most-frequent-tokens baseline by {span}"
    return f"explanations do not beat the most-frequent-tokens baseline (lift {span})"
