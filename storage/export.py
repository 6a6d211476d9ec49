"""`interp export`: a catalogue's SAE in formats other tools read.

- `neuronpedia`: the layout and fields of Neuronpedia's exports/imports
  (utils/neuronpedia-utils/neuronpedia_utils/export-data.py in hijohnnylin/neuronpedia; field
  types from apps/webapp/prisma/schema.prisma): `<model>/<source>/features|activations|
  explanations/batch-<n>.jsonl.gz`, one JSON object per line, 1,024 latents per batch. The
  latent's logit lens goes into the Neuron fields made for it (pos_str/pos_values, neg_str/...).
- `saebench`: one JSON in the shape of SAEBench's autointerp eval output (BaseEvalOutput +
  AutoInterpMetrics: eval_type_id, eval_config, eval_id, datetime_epoch_millis,
  eval_result_metrics.autointerp.{autointerp_score, autointerp_std_dev}, ...). The score is the
  mean accuracy of the saebench scorer (SAEBench's protocol, `--preset saebench`) when the SAE
  was scored with it, else of our detection scorer (comparable in kind, not in number); eval_config.scorer
  says which.

Both take one score run (`--score-run`, a key or unique prefix; default: the SAE's newest, the
run whose rows were written last): its explanations and its own scores, never the best of several
runs; eval_config.score_run names it.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from storage.read import dicts, queries, reading, resolve_sae

Q = queries("export")
BATCH = 1024  # latents per Neuronpedia batch file, as their export writes them
FORMATS = ("neuronpedia", "saebench")


def _slug(text: str) -> str:
    """Neuronpedia ids: letters, digits, dashes and underscores, lower case."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-") or "model"


def _model_name(sae: dict[str, Any]) -> str:
    """The model's name from the saes row's JSON (the train manifest's model identity)."""
    model = json.loads(sae["model"]) if isinstance(sae["model"], str) else None
    return str(model.get("name", "model")) if isinstance(model, dict) else "model"


def default_ids(sae: dict[str, Any]) -> tuple[str, str]:
    """(modelId, source id) for an SAE: the model's name, and '<layer>-interp-<arch>-<key[:8]>'
    (Neuronpedia's sources are '<layer>-<set name>')."""
    name = _model_name(sae)
    name = "smollm2-135m-instruct" if name == "embedded" else name.rsplit("/", 1)[-1]
    layer = (sae["hookpoint"] or "blocks.0").split(".")[1]
    return _slug(name), _slug(f"{layer}-interp-{sae['architecture']}-{sae['sae_key'][:8]}")


def _id(*parts: Any) -> str:
    """A stable id for a row (re-exporting gives the same ids; Neuronpedia ids are opaque)."""
    return "interp" + hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:20]


def _finite(v: float | None, default: float | None = 0.0) -> float | None:
    return default if v is None or not math.isfinite(v) else float(v)


def _write_batches(out: Path, rows_by_latent: dict[int, list[dict]], num_latents: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for b in range(0, max(num_latents, 1), BATCH):
        lines = [json.dumps(r) for lat in range(b, min(b + BATCH, num_latents))
                 for r in rows_by_latent.get(lat, [])]
        path = out / f"batch-{b // BATCH}.jsonl.gz"
        path.write_bytes(gzip.compress(("\n".join(lines) + "\n" if lines else "").encode(), 5))
        files.append(path)
    return files


def _features(cur, key, ids, creator, hookpoint) -> dict[int, list[dict]]:
    model_id, source = ids
    logits: dict[int, dict[str, tuple]] = {}
    for r in dicts(cur, Q["logits"], [key]):
        logits.setdefault(r["latent"], {})[r["direction"]] = (r["tokens"], r["vals"])
    out = {}
    for r in dicts(cur, Q["latents"], [key]):
        pos, neg = (logits.get(r["latent"], {}).get(d, ([], [])) for d in ("promoted", "suppressed"))
        out[r["latent"]] = [{
            "modelId": model_id, "layer": source, "index": str(r["latent"]),
            "maxActApprox": _finite(r["max_act"]), "creatorId": creator,
            "frac_nonzero": _finite(r["frequency"]), "hookName": hookpoint,
            "sourceSetName": source.split("-", 1)[1],
            "pos_str": list(pos[0]), "pos_values": [_finite(v) for v in pos[1]],
            "neg_str": list(neg[0]), "neg_values": [_finite(v) for v in neg[1]],
            "hasVector": False, "vector": []}]
    return out


def _activations(cur, key, ids, creator) -> dict[int, list[dict]]:
    model_id, source = ids
    out: dict[int, list[dict]] = {}
    for r in dicts(cur, Q["activations"], [key]):
        values = [_finite(a) for a in r["acts"]]
        top = max(range(len(values)), key=values.__getitem__) if values else 0
        out.setdefault(r["latent"], []).append({
            "id": _id(key, r["latent"], r["seq_id"], r["start"]), "modelId": model_id,
            "layer": source, "index": str(r["latent"]), "creatorId": creator,
            "dataSource": f"interp:{r['kind']}", "dataIndex": f"{r['seq_id']}:{r['start']}",
            "tokens": list(r["tokens"]), "values": values, "maxValue": max(values, default=0.0),
            "minValue": min(values, default=0.0), "maxValueTokenIndex": top, "dfaValues": []})
    return out


def _pick_run(cur, key: str, run: str | None = None) -> str | None:
    """The score run an export shows: `run` (a key or unique prefix of one of SAE `key`'s score
    runs) or the SAE's newest; None for an SAE that was never scored (and no `run` asked for)."""
    if run is None:
        found = cur.execute(Q["newest_score_run"], [key]).fetchone()
        return found[0] if found else None
    rows = [r[0] for r in cur.execute(Q["score_runs_like"], {"sae": key, "run": run}).fetchall()]
    if rows and (len(rows) == 1 or rows[0] == run):
        return rows[0]
    known = [r[0] for r in cur.execute(Q["score_run_keys"], [key]).fetchall()]
    what = "matches no score run" if not rows else "matches several score runs"
    raise ValueError(f"--score-run {run!r} {what} of SAE {key}; its score runs: "
                     f"{', '.join(known) or 'none (score it first)'}")


def _explanations(cur, key, ids, creator, run) -> dict[int, list[dict]]:
    model_id, source = ids
    return {r["latent"]: [{
        "id": _id(r["explanation_id"]), "modelId": model_id, "layer": source,
        "index": str(r["latent"]), "authorId": creator, "description": r["text"],
        "typeName": f"interp-{r['prompt_name'] or 'explain'}",
        "explanationModelName": r["explainer_model"], "embedding": None,
        "umap_x": None, "umap_y": None, "umap_cluster": None, "umap_log_feature_sparsity": None}]
        for r in dicts(cur, Q["explanations"], {"sae": key, "run": run})}


def export_neuronpedia(home: Path, sae: str, out: Path, *, model_id: str | None = None,
                       source_id: str | None = None, creator_id: str = "interp",
                       score_run: str | None = None) -> list[Path]:
    """Write the SAE's features, activations and explanations (those of `score_run`, default
    the newest) under out/<model>/<source>/."""
    with reading(home) as con:
        cur = con.cursor()
        key = resolve_sae(cur, sae)
        run = _pick_run(cur, key, score_run)
        row = dicts(cur, Q["sae"], [key])[0]
        dm, ds = default_ids(row)
        ids = (model_id or dm, source_id or ds)
        base = Path(out) / ids[0] / ids[1]
        n = row["num_latents"] or 0
        files = []
        for name, rows in (("features", _features(cur, key, ids, creator_id, row["hookpoint"])),
                           ("activations", _activations(cur, key, ids, creator_id)),
                           ("explanations", _explanations(cur, key, ids, creator_id, run))):
            files += _write_batches(base / name, rows, n)
        return files


def saebench_result(home: Path, sae: str, score_run: str | None = None) -> dict[str, Any]:
    """The SAE's autointerp results in SAEBench's eval-output shape, from one score run
    (`score_run`, a key or unique prefix; default: the SAE's newest)."""
    with reading(home) as con:
        cur = con.cursor()
        key = resolve_sae(cur, sae)
        row = dicts(cur, Q["sae"], [key])[0]
        run = _pick_run(cur, key, score_run)
        exps = dicts(cur, Q["explanations"], {"sae": key, "run": run})
    # Scored with the saebench scorer at all (even if every answer failed): its score or None.
    scorer = "saebench" if any(e["n_saebench"] for e in exps) else "detection"
    col = f"{scorer}_accuracy"
    accs = [e[col] for e in exps if e[col] is not None and math.isfinite(e[col])]
    return {
        "eval_type_id": "autointerp",
        "eval_config": {"model_name": _model_name(row), "scorer": scorer, "score_run": run,
                        "metric": "accuracy", "n_latents": len(exps),
                        "explainer_models": sorted({e["explainer_model"] for e in exps
                                                    if e["explainer_model"]})},
        "eval_id": str(uuid.uuid4()),
        "datetime_epoch_millis": int(time.time() * 1000),
        "eval_result_metrics": {"autointerp": {
            "autointerp_score": statistics.fmean(accs) if accs else None,
            "autointerp_std_dev": statistics.pstdev(accs) if len(accs) > 1 else 0.0 if accs else None}},
        "eval_result_details": [],
        "sae_bench_commit_hash": "none (exported by interp)",
        "sae_lens_id": None, "sae_lens_release_id": None, "sae_lens_version": None,
        "sae_cfg_dict": {"sae_key": key, "hookpoint": row["hookpoint"], "architecture":
                         row["architecture"], "d_in": row["d_in"], "d_sae": row["num_latents"],
                         "k": row["k"]},
        "eval_result_unstructured": {str(e["latent"]): {
            "explanation": e["text"], "score": e[col],
            "scores": {k: _finite(v, None) for k, v in (e["scores"] or {}).items()}}
            for e in exps},
    }


def export(home: Path, sae: str, fmt: str, out: Path, score_run: str | None = None,
           **ids: Any) -> list[Path]:
    """Write the export in `fmt` under `out` from one score run (default: the SAE's newest);
    returns the files written."""
    if fmt == "neuronpedia":
        return export_neuronpedia(home, sae, out, score_run=score_run, **ids)
    if fmt == "saebench":
        result = saebench_result(home, sae, score_run)
        path = Path(out) / f"{result['sae_cfg_dict']['sae_key'][:12]}_autointerp_eval_results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, allow_nan=False))
        return [path]
    raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
