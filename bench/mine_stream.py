"""Streaming mining (collect.store 'tokens') against collect + mine of stored activations, on the
same tokens, with the real embedded subject model and an imported random TopK SAE.

Each path runs in a fresh subprocess, one after the other, through the real stage functions:
  dense   collect (forward pass, fp16 shards written) -> train (import) -> mine (reads the shards)
  tokens  collect (token ids only) -> train (import) -> mine (forward pass inside the encode pass)
Prints per-stage seconds, collect+mine tokens/s of each path and their ratio (tokens / dense),
disk bytes of each collect artifact, each child's peak RSS, and whether the two examples.parquet
(and latents.parquet) are identical. Train (import) and dark_matter are timed too: with 'tokens'
they recompute the activations of the shards they read (a bounded prefix of the corpus).

    python bench/mine_stream.py                          # 8,192 tokens, blocks.15, 4,608 latents
    python bench/mine_stream.py --tokens 4096 --tokens-first
    python bench/mine_stream.py --tokens 32768 --latents 18432 --model-cache /tmp/models
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOOK = "blocks.15.hook_resid_post"


def _config(home: Path, store: str, args: argparse.Namespace):
    from interp.config import build_config

    model = {"hookpoint": HOOK}
    if args.model_cache:
        model["cache_dir"] = args.model_cache
    return build_config({
        "home": str(home), "model": model, "corpus": {"n_tokens": args.tokens, "seq_len": 65},
        "collect": {"store": store}, "sae": {"path": str(home / "ext_sae"), "eval_sequences": 0},
        "logits": {"k": 0}})


def child(args: argparse.Namespace) -> None:
    """One path through collect -> train (import) -> mine -> dark_matter; prints a JSON line."""
    import resource

    import torch

    from interp.sae import SAE, save_sae
    from interp.stages import build

    home = Path(args.home)
    save_sae(SAE(576, args.latents, 32, generator=torch.Generator().manual_seed(0),
                 cfg={"hookpoint": HOOK}), home / "ext_sae")
    cfg = _config(home, args.child, args)
    seconds, t = {}, time.perf_counter()
    c = build(cfg, "collect", {})
    seconds["collect"], t = time.perf_counter() - t, time.perf_counter()
    tr = build(cfg, "train", {"collect": c})
    seconds["train_import"], t = time.perf_counter() - t, time.perf_counter()
    m = build(cfg, "mine", {"collect": c, "train": tr})
    seconds["mine"], t = time.perf_counter() - t, time.perf_counter()
    build(cfg, "dark_matter", {"collect": c, "train": tr})
    seconds["dark_matter"] = time.perf_counter() - t
    man = m.manifest()
    print(json.dumps({
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "collect_bytes": sum(p.stat().st_size for p in c.path.iterdir() if p.is_file()),
        "n_tokens": c.manifest()["n_sequences"] * (c.manifest()["seq_len"] - 1),
        "mine_phases": man["phase_seconds"], "source": man.get("source"),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "mine_dir": str(m.path)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=8192, help="corpus.n_tokens (BOS excluded)")
    p.add_argument("--latents", type=int, default=4608, help="imported SAE width (k = 32)")
    p.add_argument("--model-cache", default=None, help="model.cache_dir (the embedded model's "
                   "safetensors conversion; converted there once if missing)")
    p.add_argument("--tokens-first", action="store_true", help="run the streaming path first "
                   "(the machine's load drifts: run both orders)")
    p.add_argument("--child", choices=["dense", "tokens"], help=argparse.SUPPRESS)
    p.add_argument("--home", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    import pyarrow.parquet as pq

    out = {}
    with tempfile.TemporaryDirectory(prefix="mine-stream-") as tmp:
        for store in ("tokens", "dense") if args.tokens_first else ("dense", "tokens"):
            cmd = [sys.executable, __file__, "--child", store, "--home", f"{tmp}/{store}",
                   "--tokens", str(args.tokens), "--latents", str(args.latents)]
            if args.model_cache:
                cmd += ["--model-cache", args.model_cache]
            run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if run.returncode:
                sys.exit(f"{store} failed:\n{run.stderr[-3000:]}")
            out[store] = json.loads(run.stdout.strip().splitlines()[-1])
            print(store, json.dumps(out[store]), flush=True)
        same = {f: pq.read_table(Path(out["dense"]["mine_dir"]) / f).equals(
                    pq.read_table(Path(out["tokens"]["mine_dir"]) / f))
                for f in ("examples.parquet", "latents.parquet")}
    rate = {k: v["n_tokens"] / (v["seconds"]["collect"] + v["seconds"]["mine"]) for k, v in out.items()}
    d, s = out["dense"]["collect_bytes"], out["tokens"]["collect_bytes"]
    print(f"collect+mine tokens/s: dense {rate['dense']:.0f}, tokens {rate['tokens']:.0f}, "
          f"ratio {rate['tokens'] / rate['dense']:.2f}; collect disk {d / 2**20:.1f} MiB vs "
          f"{s / 2**20:.2f} MiB ({(d - s) / 2**20:.1f} MiB saved, {d / s:.0f}x); identical "
          f"outputs: {same}")


if __name__ == "__main__":
    main()
