"""Controls: is the judge telling explanations apart at all?

Each run scores, besides the LLM's explanation, two stand-ins on the same windows with the same
judge: `shuffled` (another scored latent's explanation, a seeded derangement, so it never is the
latent's own) and `top_tokens` (no LLM: the latent's most frequent activating train tokens). The
lift of the real explanation over a control is the paired mean difference of the headline metric
over the latents scored both ways, with a 95% t interval over latents for reading; `informative`
is the verdict of a one-sided paired sign-flip permutation test (lift_test), whose rate of false
"informative" verdicts is at most ALPHA when real and control are exchangeable. A judge that
cannot beat shuffled explanations carries no information.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from interp.mine.examples import Example
from interp.scoring.aggregate import as_table, seq_sum
from interp.scoring.stats import LEVEL, _rng, t_interval

PROBE = "probe"  # the `control` column of a probe's rows (their control_text names the rule)

ALPHA = 0.05        # one-sided level of the informativeness test
EXACT_MAX = 12      # up to this many latents every sign pattern (4,096) is enumerated
N_PERM = 10_000     # random sign patterns above it (p-value resolution 1e-4)

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


def _values(t: pa.Table, scorer: str, control: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(latents, values) of one scorer's ok rows with a value, with `control`'s stand-in (None:
    the real explanation)."""
    which = pc.is_null(t["control"]) if control is None else pc.equal(t["control"], control)
    ok = pc.and_(pc.equal(t["status"], "ok"), pc.is_valid(t["value"]))
    found = t.filter(pc.and_(pc.and_(pc.equal(t["scorer"], scorer), which), ok))
    return found["latent"].to_numpy(), found["value"].to_numpy()


def _signs(n: int, seed: Any, n_perm: int) -> tuple[np.ndarray, bool]:
    """[patterns, n] of +-1: all 2^n when n <= EXACT_MAX (exact), else n_perm seeded draws."""
    if n <= EXACT_MAX:
        bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
        return 1.0 - 2.0 * bits, True
    return 1.0 - 2.0 * _rng(seed).integers(0, 2, (n_perm, n)), False


def sign_flip_pvalues(diffs: Any, *, seed: Any = 0, n_perm: int = N_PERM) -> np.ndarray:
    """One-sided p-values of H0 "the paired differences are symmetric about 0" (real and control
    exchangeable on each latent) against "real is higher", for each row of `diffs` [..., n].

    The statistic is the sum of differences; its null distribution flips each latent's sign.
    Exact (all 2^n patterns) up to EXACT_MAX latents, else n_perm seeded random patterns with
    p = (1 + #{T* >= T}) / (n_perm + 1), which keeps P(p <= a) <= a. Ties count against
    rejecting (a float tolerance), zeros are allowed, n = 0 gives p = 1.
    """
    d = np.asarray(diffs, np.float64)
    n = d.shape[-1]
    signs, exact = _signs(n, seed, n_perm)
    observed = d.sum(-1)
    tol = 1e-9 * (1 + np.abs(d).sum(-1))      # sums of 0.1s differ in the last bits
    hits = ((d @ signs.T) >= (observed - tol)[..., None]).sum(-1)
    return hits / len(signs) if exact else (1 + hits) / (len(signs) + 1)


def lift_test(real: Sequence[float], control: Sequence[float], *, seed: Any = 0,
              alpha: float = ALPHA, level: float = LEVEL, n_perm: int = N_PERM) -> dict[str, Any]:
    """Does the real explanation beat the control? real[i], control[i]: one latent's headline
    metric with each explanation (paired, same latents, same order).

    Returns {n, lift (mean of real - control), ci_low, ci_high (Student's t interval at `level`,
    for reading; None below 2 latents), p_value (sign_flip_pvalues, one-sided; None for none),
    informative (p_value <= alpha: the verdict)}. The interval and the test can disagree at the
    margin (a two-sided 95% interval matches a one-sided 2.5% test): the verdict is the test's.
    With n latents the smallest possible p is 2^-n: below 5 latents nothing is informative.
    """
    d = np.asarray(real, np.float64) - np.asarray(control, np.float64)
    if not len(d):
        return {"n": 0, "lift": None, "ci_low": None, "ci_high": None, "p_value": None,
                "informative": False}
    p = float(sign_flip_pvalues(d, seed=seed, n_perm=n_perm))
    lo = hi = None
    if len(d) >= 2:
        _, lo, hi = (float(x) for x in t_interval(d, level=level))
    return {"n": len(d), "lift": float(d.mean()), "ci_low": lo, "ci_high": hi, "p_value": p,
            "informative": p <= alpha}


def control_lifts(rows: pa.Table | list[dict[str, Any]], *, seed: int = 0) -> list[dict[str, Any]]:
    """One row per (scorer, control) present in `rows` (a scores table, or its rows as dicts):
    the lift of the real explanation over the control, paired over latents, its interval, the
    one-sided test's p_value and the verdict (lift_test). Columnar: the real explanations' rows
    (10^6 at scale) are read as arrays."""
    t = as_table(rows, ("latent", "scorer", "control", "status", "metric", "value"))
    kinds = t.filter(pc.is_valid(t["control"])).group_by(["scorer", "control"]).aggregate([])
    out, real = [], {}
    for scorer, control in sorted(zip(kinds["scorer"].to_pylist(), kinds["control"].to_pylist())):
        if scorer not in real:
            real[scorer] = _values(t, scorer, None)
        real_latents, real_values = real[scorer]
        ctrl_latents, ctrl_values = _values(t, scorer, control)
        both, i, j = np.intersect1d(real_latents, ctrl_latents, return_indices=True)
        test = lift_test(real_values[i], ctrl_values[j], seed=(seed, scorer, control))
        metric = t["metric"][pc.index(t["scorer"], scorer).as_py()].as_py()
        row = {"scorer": scorer, "control": control, "metric": metric,
               "n_latents": len(both),
               "real_mean": seq_sum(real_values[i]) / len(both) if len(both) else None,
               "control_mean": seq_sum(ctrl_values[j]) / len(both) if len(both) else None,
               **{k: test[k] for k in ("lift", "ci_low", "ci_high", "p_value", "informative")},
               "alpha": ALPHA}
        out.append(row | {"verdict": verdict(row)})
    return out


def _span(row: dict[str, Any]) -> str:
    lift, lo, hi = row["lift"], row.get("ci_low"), row.get("ci_high")
    interval = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
    return f"{lift:.2f}{interval}"


def _evidence(row: dict[str, Any]) -> str:
    """' (one-sided p = 0.004, 12 latents)' when the row has the test's p-value (rows written
    before the test have none)."""
    if row.get("p_value") is None:
        return ""
    return f" (one-sided p = {row['p_value']:.3g}, {row['n_latents']} latents)"


def verdict(row: dict[str, Any]) -> str:
    """One sentence saying whether the judge tells explanations from the control."""
    n, control = row.get("n_latents") or 0, row["control"]
    if not n:
        return f"no latent was scored with both its explanation and the {control} control"
    alpha = row.get("alpha") or ALPHA
    if row.get("p_value") is not None and not row["informative"] and 0.5 ** n > alpha:
        need = int(np.ceil(np.log2(1 / alpha)))
        return (f"too few latents for a verdict: with {n} latents scored both ways the test "
                f"cannot reach p <= {alpha:g} ({need} needed; raise score.control_latents); "
                f"lift over {control} {_span(row)}")
    span, why = _span(row), _evidence(row)
    if control == "shuffled":
        if row["informative"]:
            return f"explanations beat shuffled ones by {span}{why}"
        return ("the judge cannot tell explanations from shuffled ones: no evidence that these "
                f"scores carry information (lift {span}{why})")
    if row["informative"]:
        return f"explanations beat the most-frequent-tokens baseline by {span}{why}"
    return f"explanations do not beat the most-frequent-tokens baseline (lift {span}{why})"
