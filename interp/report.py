"""`interp report`: one self-contained HTML file describing a run, readable offline from disk.

Plots are inline SVG drawn in Python (interp.ui.svg), the stylesheet is inlined, and there is no
script: score distributions per scorer, explanation quality against firing frequency, the SAE's
metrics, and the LLM ledger's tokens, latency and failures, plus each scorer's best and worst
explanations with their top examples shaded, and the run's scores beside other architectures'
(SAE latents vs MLP neurons) on the same model, layer and corpus. All corpus and LLM text is
escaped by the template.

Every score in it is the run's own (its score run, `runs.score_key`), never another run's or the
best of several, and each is read per scorer beside its metric's chance level: scorers' headline
metrics have different scales, so none is averaged with another.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from interp.ui import svg
from interp.ui.app import HERE, make_env
from interp.ui.latent import shade, tokens_html
from storage.read import dicts, queries

log = logging.getLogger(__name__)
Q = queries("report")


def _run(cur, run_id: str | None) -> dict[str, Any]:
    rows = dicts(cur, Q["runs_matching"], {"id": run_id})
    if not rows:
        known = [r[0] for r in cur.execute(Q["run_ids"]).fetchall()]
        raise ValueError(f"no run {run_id!r} in the catalogue; known runs: {', '.join(known) or 'none'}")
    exact = [r for r in rows if r["run_id"] == run_id]
    if run_id and not exact and len(rows) > 1:
        raise ValueError(f"run {run_id!r} matches {len(rows)} runs: give more of the run id")
    return (exact or rows)[0]


def _scores(cur, run: dict[str, Any]) -> list[dict[str, Any]]:
    return dicts(cur, Q["run_scores"], {"sae": run["sae_key"], "score": run["score_key"]})


def _score_plots(scores: list[dict[str, Any]]) -> tuple[list[str], str]:
    by_scorer: dict[str, list[dict]] = {}
    for s in scores:
        if s["value"] is not None:
            by_scorer.setdefault(s["scorer"], []).append(s)
    hists = []
    for i, (name, rows) in enumerate(sorted(by_scorer.items())):
        vals = [r["value"] for r in rows]
        lo = -1.0 if min(vals) < 0 else 0.0
        hists.append(svg.histogram(svg.bin_values(vals, lo, 1.0, 20), lo, 1.0, ylabel="explanations",
                                   title=f"{name}: distribution of scores", xlabel=f"{name} score "
                                   f"(n={len(vals)}, mean {sum(vals) / len(vals):.3f})",
                                   color=svg.PALETTE[i % len(svg.PALETTE)]))
    scatter = svg.scatter({k: [(r["frequency"], r["value"]) for r in v if r["frequency"]]
                           for k, v in sorted(by_scorer.items())},
                          title="explanation quality against firing frequency", xlabel="firing frequency",
                          ylabel="score", log_x=True)
    return hists, scatter


def _ledger(cur, run: dict[str, Any]) -> dict[str, Any]:
    keys = [k for k in (run["explain_key"], run["score_key"]) if k]
    calls = dicts(cur, Q["run_calls"], {"keys": keys})
    stages = sorted({c["stage"] or c["artifact_stage"] for c in calls})
    tok = {s: [sum(c["prompt_tokens"] or 0 for c in calls if (c["stage"] or c["artifact_stage"]) == s),
               sum(c["completion_tokens"] or 0 for c in calls if (c["stage"] or c["artifact_stage"]) == s)]
           for s in stages}
    labels = [f"{s} {part}" for s in stages for part in ("prompt", "completion")]
    status = Counter((c["stage"] or c["artifact_stage"], c["status"]) for c in calls)
    errors = Counter((c["stage"] or c["artifact_stage"], (c["error"] or "")[:200]) for c in calls
                     if c["status"] != "ok")
    lat = [c["latency_s"] for c in calls if c["latency_s"] is not None]
    hi = max(lat, default=1.0) or 1.0
    return {"n": len(calls), "models": sorted({c["model"] or "" for c in calls}),
            "tokens_plot": svg.bars(labels, [v for s in stages for v in tok[s]],
                                    title="LLM tokens by stage", xlabel="tokens"),
            "status": sorted(status.items()), "errors": errors.most_common(20),
            "latency_plot": svg.histogram(svg.bin_values(lat, 0.0, hi, 20), 0.0, hi,
                                          title="LLM call latency", xlabel="seconds per call",
                                          ylabel="calls", color=svg.PALETTE[2])}


def _showcase(cur, run: dict[str, Any], scores: list[dict[str, Any]],
              n: int = 5) -> dict[str, dict[str, Any]]:
    """Per scorer, the best and worst explanations by that scorer's headline score (its metric
    and chance level beside them), each with its top example shaded. Per scorer because a mean
    over scorers would add balanced accuracies to correlations and nats."""
    out: dict[str, dict[str, Any]] = {}
    for scorer in sorted({s["scorer"] for s in scores if s["value"] is not None}):
        rows = [s for s in scores if s["scorer"] == scorer and s["value"] is not None]
        ranked = sorted(rows, key=lambda s: (-s["value"], s["latent"]))
        best, worst = ranked[:n], ranked[n:][::-1][:n]
        out[scorer] = {"metric": rows[0]["metric"], "chance": rows[0]["chance"],
                       "best": [_example(cur, run, s) for s in best],
                       "worst": [_example(cur, run, s) for s in worst]}
    return out


def _example(cur, run: dict[str, Any], score: dict[str, Any]) -> dict[str, Any]:
    """A showcased explanation: its latent, score, text and top example shaded."""
    text = cur.execute(Q["explanation_text"], [score["explanation_id"]]).fetchone()
    ex = cur.execute(Q["top_example"], [run["mine_key"], score["latent"]]).fetchone()
    return {"latent": score["latent"], "score": score["value"], "text": text[0] if text else None,
            "html": tokens_html(shade(ex[0], ex[1], max(ex[1]))) if ex else ""}


def _summary(cur, run: dict[str, Any], scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Per scorer: the mean headline score with its bootstrap interval, delphi's frequency-
    weighted mean, and whether the judge beats the controls (one sentence each)."""
    from interp.scoring.aggregate import summarize

    freq = {s["latent"]: s["frequency"] for s in scores if s["frequency"] is not None}
    means = summarize([s for s in scores if s["value"] is not None or s["status"] != "ok"], freq)
    for name, m in means.items():  # the level a judge that knows nothing reaches (migration 8)
        m["chance"] = next((s["chance"] for s in scores
                            if s["scorer"] == name and s["chance"] is not None), None)
    controls = dicts(cur, Q["run_controls"], [run["score_key"]]) if run.get("score_key") else []
    return {"means": means, "controls": controls}


def _architectures(cur, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Per scorer, this run's mean headline score beside the newest run of each other
    architecture (SAE latents vs MLP neurons) on the same model, layer and token sequences."""
    compare = queries("compare")
    found = cur.execute(compare["comparable_runs"], {"id": run["run_id"]}).fetchall()
    peers = [r[0] for r in found]
    if not peers:
        return []
    return dicts(cur, compare["architecture_scores"], {"runs": [run["run_id"], *peers]})


def build_report(cur, run_id: str | None = None) -> str:
    """The report's HTML for one run (the newest if run_id is None)."""
    run = _run(cur, run_id)
    sae = dicts(cur, Q["sae"], [run["sae_key"]])
    status = cur.execute(Q["explanation_status"], [run["explain_key"]]).fetchall()
    scores = _scores(cur, run)
    hists, scatter = _score_plots(scores)
    s0 = sae[0] if sae else {}
    shown = [(name, s0.get(col)) for name, col in (("FVU", "fvu"), ("dead fraction", "dead_frac"),
                                                    ("CE loss recovered", "ce_loss_recovered"))]
    shown = [(name, v) for name, v in shown if v is not None]  # unmeasured is not zero
    sae_plot = svg.bars([n for n, _ in shown], [v for _, v in shown], title="SAE metrics",
                        color=svg.PALETTE[3])
    css = (HERE / "static" / "style.css").read_text()
    return make_env().get_template("report.html").render(
        css=css, run=run, sae=s0, status=status, n_scores=len(scores), score_hists=hists,
        scatter=scatter, sae_plot=sae_plot, ledger=_ledger(cur, run),
        showcase=_showcase(cur, run, scores), summary=_summary(cur, run, scores),
        architectures=_architectures(cur, run),
        generated=time.time())


def write_report(home: Path, out: Path | None = None, run_id: str | None = None) -> Path:
    """Write the report of a run to `out` (default `<home>/reports/<run_id>.html`)."""
    from storage.read import reading

    with reading(home) as con:
        html = build_report(con, run_id)
        rid = _run(con, run_id)["run_id"]
    out = Path(out) if out else Path(home) / "reports" / f"{rid}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    log.info("wrote the report of run %s to %s", rid, out)
    return out
