"""Which explainer prompt works best with the embedded 135M model? Explains the same latents of a
finished default run with each variant, scores them with the real detection scorer (llama.cpp,
log-prob AUC) and with MiniLM similarity (embedding AUC, computed here), and prints a table.

    .venv/bin/python bench/explainer_prompts.py --home /tmp/dhome --latents 16

The run home is copied to a work directory (collect, train and mine artifacts only) and never
modified; explain and score resume there if the bench is interrupted and run again. Every variant
sees the same latents and the same held-out windows; only the prompt and
explain settings differ. Cost: per variant, one explain call plus n_positive + n_negative detection
calls per latent on the shared CPU.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml
from sklearn.metrics import roc_auc_score

from interp.artifacts import ArtifactStore
from interp.config import build_config
from interp.mine.examples import Example, load_examples
from interp.stages import build, stage_key

VARIANTS: dict[str, dict] = {
    "default": {},
    "no_top_tokens": {"top_tokens": False},
    "contrastive": {"prompt": "explain_contrastive"},
    "cot": {"prompt": "explain_cot", "max_tokens": 120},
}


def _copy_home(src: Path, dst: Path) -> dict:
    """Copy a run's collect/train/mine artifacts; return its config tree with home = dst."""
    runs = sorted((src / "runs").glob("*/config.yaml"))
    if not runs:
        raise SystemExit(f"{src} holds no finished run (runs/*/config.yaml); run `interp run` first")
    tree = yaml.safe_load(runs[-1].read_text())
    for stage in ("collect", "train", "mine"):
        shutil.copytree(src / "artifacts" / stage, dst / "artifacts" / stage,
                        ignore=shutil.ignore_patterns("*.lock"), dirs_exist_ok=True)
    tree["home"] = str(dst)
    return tree


def _embedding_auc(model, text: str, examples: list[Example]) -> float | None:
    """AUC of cos(explanation, window) separating held-out activating from random windows."""
    test = [e for e in examples if e.split == "test" and e.kind in ("quantile", "random")]
    labels = [int(e.kind == "quantile") for e in test]
    if len(set(labels)) < 2:
        return None
    emb = model.encode([text] + ["".join(e.tokens) for e in test], normalize_embeddings=True)
    return float(roc_auc_score(labels, emb[1:] @ emb[0]))


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and not np.isnan(x)]
    return statistics.fmean(xs) if xs else float("nan")


def run_variant(tree: dict, arts: dict[str, str], name: str, over: dict, args, minilm) -> dict:
    cfg = build_config(tree, {"explain.n_latents": args.latents, "score.scorers": ["detection"],
                              "llm.timeout_s": args.timeout, "llm.concurrency": args.concurrency,
                              **{f"explain.{k}": v for k, v in over.items()}}, origin=name)
    store = ArtifactStore(cfg.home)
    refs = {s: store.require(s, arts[s]) for s in ("collect", "train", "mine")}
    mine_ref = refs["mine"]
    t0 = time.time()
    exp = build(cfg, "explain", refs)
    t_explain = time.time() - t0
    sc = build(cfg, "score", {**refs, "explain": exp})
    t_score = time.time() - t0 - t_explain
    exps = pq.read_table(exp.path / "explanations.parquet").to_pylist()
    scores = {s["latent"]: s for s in pq.read_table(sc.path / "scores.parquet").to_pylist()}
    ok = [e for e in exps if e["status"] == "ok"]
    calls = [pq.read_table(p / "llm_calls.parquet").to_pylist() for p in (exp.path, sc.path)]
    retries = sum(c["status"] != "ok" for cs in calls for c in cs)
    examples = load_examples(mine_ref.path, refs["collect"].path, [e["latent"] for e in ok])
    emb_auc = {e["latent"]: _embedding_auc(minilm, e["text"], examples[e["latent"]]) for e in ok}
    # A latent without a usable explanation counts as chance (0.5) in the *_all columns, so a
    # prompt cannot look better by failing on hard latents.
    det_auc = [scores.get(e["latent"], {}).get("auc") for e in exps]
    det_bacc = [scores.get(e["latent"], {}).get("balanced_accuracy") for e in exps]
    emb = [emb_auc.get(e["latent"]) for e in exps]
    return {
        "variant": name, "ok": f"{len(ok)}/{len(exps)}",
        "det_auc": _mean(det_auc), "det_auc_all": _mean([0.5 if x is None else x for x in det_auc]),
        "det_bacc": _mean(det_bacc), "emb_auc": _mean(emb),
        "emb_auc_all": _mean([0.5 if x is None else x for x in emb]),
        "explain_s": t_explain, "score_s": t_score, "failed_calls": retries,
        "samples": [(e["latent"], e["text"]) for e in ok[:3]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, default=Path("/tmp/dhome"), help="finished default-run home")
    ap.add_argument("--latents", type=int, default=16, help="latents explained per variant")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--work", type=Path, default=None, help="work directory (kept, resumable); "
                    "default: a temporary one")
    ap.add_argument("--timeout", type=float, default=900.0, help="llm.timeout_s: a shared CPU "
                    "can be slow, and a timed-out request is retried from scratch")
    ap.add_argument("--concurrency", type=int, default=2, help="llm.concurrency (server slots)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from interp.embed import load_model

    minilm = load_model("cpu")
    with tempfile.TemporaryDirectory(prefix="explainer-bench-") as tmp:
        work = args.work or Path(tmp)
        tree = _copy_home(args.home, work)
        cfg0 = build_config(tree)
        run_json = yaml.safe_load((sorted(args.home.glob("runs/*/run.json"))[-1]).read_text())
        arts = run_json["artifacts"]
        if stage_key(cfg0, "mine", {"collect": arts["collect"], "train": arts["train"]}) != arts["mine"]:
            raise SystemExit("the mine settings of this home no longer match its mine artifact")
        rows = []
        for name in args.variants:
            rows.append(run_variant(tree, arts, name, VARIANTS[name], args, minilm))
            print(f"done {name}: {rows[-1]['ok']} ok, explain {rows[-1]['explain_s']:.0f}s, "
                  f"score {rows[-1]['score_s']:.0f}s", flush=True)
    cols = ("variant", "ok", "det_auc", "det_auc_all", "det_bacc", "emb_auc", "emb_auc_all",
            "explain_s", "score_s", "failed_calls")
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) and not c.endswith("_s")
                                else ((f"{r[c]:.0f}" if r[c] >= 1 else "cached")
                                      if c.endswith("_s") else str(r[c]))
                                for c in cols) + " |")
    for r in rows:
        print(f"\n{r['variant']}: " + "; ".join(f"{l}: {t!r}" for l, t in r["samples"]))


if __name__ == "__main__":
    main()
