"""What a score run concludes, per scorer: the means (summary.json), the lift of the explanations
over each control (controls.parquet), the judge's results on the known-answer probes
(judge_checks.parquet) and the three-way verdict (verdicts.parquet): the judge fails the probes
(its scores say nothing), or it passes them but explanations do not beat shuffled ones, or both
pass."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from interp.artifacts import write_parquet_atomic, write_text_atomic
from interp.scoring.aggregate import SUMMARY_COLUMNS, summarize
from interp.scoring.controls import PROBE, control_lifts
from interp.scoring.metrics import classification_metrics
from interp.scoring.stats import class_interval, mean_interval_small

CONTROLS_SCHEMA = pa.schema([
    ("scorer", pa.string()), ("control", pa.string()), ("metric", pa.string()),
    ("n_latents", pa.int32()), ("real_mean", pa.float64()), ("control_mean", pa.float64()),
    ("lift", pa.float64()), ("ci_low", pa.float64()), ("ci_high", pa.float64()),
    ("informative", pa.bool_()), ("p_value", pa.float64()), ("alpha", pa.float64()),
    ("verdict", pa.string())])
JUDGE_CHECKS_SCHEMA = pa.schema([
    ("scorer", pa.string()), ("probe", pa.string()), ("metric", pa.string()),
    ("value", pa.float64()), ("ci_low", pa.float64()), ("ci_high", pa.float64()),
    ("chance", pa.float64()), ("n_valid", pa.int32()), ("n_examples", pa.int32()),
    ("status", pa.string()), ("passed", pa.bool_())])
VERDICTS_SCHEMA = pa.schema([
    ("scorer", pa.string()), ("metric", pa.string()), ("chance", pa.float64()),
    ("probes_value", pa.float64()), ("probes_ci_low", pa.float64()),
    ("probes_ci_high", pa.float64()), ("probes_passed", pa.bool_()),
    ("lift", pa.float64()), ("lift_ci_low", pa.float64()), ("lift_ci_high", pa.float64()),
    ("informative", pa.bool_()), ("case", pa.string()), ("verdict", pa.string())])
_CLASSIFICATION = ("balanced_accuracy", "accuracy", "auc")


def _pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One scorer's probes taken together: classification metrics over every judged probe window
    (interval over windows), others the mean over probes (interval over probes)."""
    metric, chance = rows[0]["metric"], rows[0]["chance"]
    ok = [r for r in rows if r["status"] == "ok" and r["value"] is not None]
    out = {"scorer": rows[0]["scorer"], "probe": "all", "metric": metric, "chance": chance,
           "n_valid": sum(r["n_valid"] or 0 for r in rows),
           "n_examples": sum(r["n_examples"] or 0 for r in rows),
           "status": "ok" if ok else "failed", "value": None, "ci_low": None, "ci_high": None}
    if metric in _CLASSIFICATION:
        preds = [p for r in ok for p in r["predictions"]]
        labels = [p["label"] for p in preds]
        values = [p["prob"] if metric == "auc" else p["prediction"] for p in preds]
        m = classification_metrics(labels, [p["prediction"] for p in preds],
                                   [p["prob"] for p in preds])
        ci = class_interval(labels, values, metric) if preds else None
        out["value"], (out["ci_low"], out["ci_high"]) = m.get(metric), ci or (None, None)
    elif ok:
        out["value"], out["ci_low"], out["ci_high"] = mean_interval_small([r["value"] for r in ok])
    if out["value"] is None:
        out["status"] = "failed"
    return out


def judge_checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scorer: one row per probe, and the probes pooled ('all') with `passed` = its interval
    lies above the chance level."""
    out = []
    probes = [r for r in rows if r["control"] == PROBE]
    for scorer in sorted({r["scorer"] for r in probes}):
        mine = sorted((r for r in probes if r["scorer"] == scorer), key=lambda r: -r["latent"])
        for r in mine:
            out.append({k: r[k] for k in ("scorer", "metric", "value", "ci_low", "ci_high",
                                          "chance", "n_valid", "n_examples", "status")}
                       | {"probe": r["control_text"], "passed": _above(r)})
        pooled = _pooled(mine)
        out.append(pooled | {"passed": _above(pooled)})
    return out


def _above(r: dict[str, Any]) -> bool | None:
    if r["ci_low"] is None or r["chance"] is None:
        return None
    return r["ci_low"] > r["chance"]


def verdicts(scorers: list[str], checks: list[dict], controls: list[dict]) -> list[dict]:
    """The three-way verdict of each scorer that ran (see the module docstring)."""
    out = []
    for scorer in scorers:
        probe = next((c for c in checks if c["scorer"] == scorer and c["probe"] == "all"), {})
        lift = next((c for c in controls if c["scorer"] == scorer and c["control"] == "shuffled"), {})
        row = {"scorer": scorer, "metric": probe.get("metric") or lift.get("metric"),
               "chance": probe.get("chance"), "probes_value": probe.get("value"),
               "probes_ci_low": probe.get("ci_low"), "probes_ci_high": probe.get("ci_high"),
               "probes_passed": probe.get("passed"), "lift": lift.get("lift"),
               "lift_ci_low": lift.get("ci_low"), "lift_ci_high": lift.get("ci_high"),
               "informative": lift.get("informative") if lift.get("n_latents") else None}
        out.append(row | _case(row))
    return out


def _span(v, lo, hi) -> str:
    return "n/a" if v is None else f"{v:.2f} [{lo:.2f}, {hi:.2f}]" if lo is not None else f"{v:.2f}"


def _case(r: dict[str, Any]) -> dict[str, str]:
    probes = _span(r["probes_value"], r["probes_ci_low"], r["probes_ci_high"])
    lift = _span(r["lift"], r["lift_ci_low"], r["lift_ci_high"])
    if r["probes_passed"] is False:
        return {"case": "judge_fails_probes", "verdict": (
            f"the judge fails the known-answer probes ({r['metric']} {probes}, chance "
            f"{r['chance']:.2f}): its scores say nothing about the explanations")}
    passed = "the judge passes the known-answer probes" if r["probes_passed"] else \
        "no known-answer probe was scored"
    if r["informative"] is None:
        return {"case": "untested", "verdict": f"{passed}; explanations were not compared with "
                "shuffled ones (no shuffled control for this scorer)"}
    if not r["informative"]:
        return {"case": "no_information", "verdict": f"{passed} ({probes}), but explanations do "
                f"not beat shuffled ones (lift {lift}): these scores carry no information"}
    return {"case": "informative" if r["probes_passed"] else "informative_unprobed",
            "verdict": f"{passed} ({probes}) and explanations beat shuffled ones (lift {lift})"}


def _frequencies(mine_dir: Path) -> pa.Table | None:
    path = Path(mine_dir) / "latents.parquet"
    return pq.read_table(path, columns=["latent", "frequency"]) if path.is_file() else None


def write_summary(cfg: Any, scores: pa.Table, out: Path, mine_dir: Path) -> dict:
    """summary.json and the controls / judge_checks / verdicts tables of a score run into `out`.

    Columnar, so it holds at 10^6 latents: only the probe rows (a handful) become Python dicts,
    predictions included (judge_checks pools them); of the rest it reads the few columns the
    aggregates need, as arrays."""
    seed, n_boot = cfg.score.seed, cfg.score.n_bootstrap
    probe = pc.fill_null(pc.equal(scores["control"], PROBE), False)
    plain = scores.select(list(SUMMARY_COLUMNS)).filter(pc.invert(probe))
    controls = control_lifts(plain, seed=seed)
    checks = judge_checks(scores.filter(probe).to_pylist())
    found = verdicts(list(cfg.score.scorers), checks, controls)
    summary = {"scorers": summarize(plain, _frequencies(mine_dir), seed=seed, n_boot=n_boot),
               "controls": controls, "judge_checks": checks, "verdicts": found, "level": 0.95,
               "n_bootstrap": n_boot}
    for name, table, schema in (("controls", controls, CONTROLS_SCHEMA),
                                ("judge_checks", checks, JUDGE_CHECKS_SCHEMA),
                                ("verdicts", found, VERDICTS_SCHEMA)):
        write_parquet_atomic(pa.Table.from_pylist(table, schema=schema), out / f"{name}.parquet")
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary
