"""Train/test split by document (issue 12) vs the old split by window, in one run: mining time
and how many latents keep enough held-out positives, on a real collect + train artifact.

Both miners run on the same shards and SAE in fresh subprocesses (the old one from a git
revision's interp/ package, extracted to a temp dir), twice each, alternating; the faster run of
each counts. A collect artifact made before documents.parquet existed is copied and given one,
rebuilt from its corpus config and the model's tokenizer, and checked against its stored tokens.

    python bench/doc_split.py --collect .interp/artifacts/collect/<key> \\
        --sae .interp/artifacts/train/<key> --tokenizer .interp/models/smollm2-135m-instruct
    python bench/doc_split.py --synthetic-tokens 262144   # bench/mine_scale.py's shards, random SAE
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (1, 4, 10, 20)


def with_documents(collect: Path, tokenizer: str, tmp: Path) -> Path:
    """collect itself if it has documents.parquet, else a copy given one (checked)."""
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoTokenizer

    from interp.collect.config import CorpusConfig
    from interp.collect.corpus import token_stream
    from interp.collect.documents import DOCUMENTS, write_documents

    if (collect / DOCUMENTS).is_file():
        return collect
    meta = json.loads((collect / "manifest.json").read_text())
    corpus = {"max_doc_tokens": None,  # left out of the manifest for whole documents
              **{k: v for k, v in meta["corpus"].items() if k in CorpusConfig.model_fields}}
    seqs, starts = token_stream(CorpusConfig(**corpus), AutoTokenizer.from_pretrained(tokenizer))
    stored = torch.tensor(pq.read_table(collect / "sequences.parquet", columns=["tokens"])
                          .column("tokens").to_pylist())
    if not torch.equal(stored, seqs):
        raise SystemExit(f"{collect}: the corpus config and tokenizer do not reproduce its tokens")
    out = tmp / "collect"
    shutil.copytree(collect, out)
    write_documents(starts, seqs[:, 1:].numel(), out)
    return out


def synthetic(n_tokens: int, tmp: Path) -> tuple[Path, str]:
    """bench/mine_scale.py's shards (with documents) and a seeded random TopK SAE."""
    import torch

    from interp.sae import save_sae
    from interp.sae.model import SAE

    sys.path.insert(0, str(ROOT / "bench"))
    from mine_scale import D, K, make_shards

    make_shards(tmp / "collect", n_tokens)
    sae = SAE(D, 2304, K, generator=torch.Generator().manual_seed(1))
    return tmp / "collect", str(save_sae(sae, tmp / "sae"))


def child(args: argparse.Namespace) -> None:
    """Mine once with the interp package on sys.path; print seconds and held-out counts."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import torch

    from interp.collect.shards import ActivationShards
    from interp.mine.config import MineConfig
    from interp.mine.stage import mine_into
    from interp.sae import load_sae

    torch.set_num_threads(1)
    sae = load_sae(Path(args.sae))
    out = Path(tempfile.mkdtemp(dir=args.tmp))
    t0 = time.perf_counter()
    stats = mine_into(sae, ActivationShards(Path(args.collect)), MineConfig(), out)
    seconds = time.perf_counter() - t0
    ex = pq.read_table(out / "examples.parquet", columns=["latent", "kind", "split", "max_act"])
    test_pos = ex.filter(pc.and_(pc.equal(ex["kind"], "quantile"), pc.equal(ex["split"], "test")))
    counts = torch.bincount(torch.tensor(test_pos["latent"].to_pylist(), dtype=torch.long),
                            minlength=sae.num_latents)
    tops = ex.filter(pc.equal(ex["kind"], "top"))
    n_top = torch.bincount(torch.tensor(tops["latent"].to_pylist(), dtype=torch.long),
                           minlength=sae.num_latents)
    live = n_top > 0
    split = {k: stats[k] for k in ("n_documents", "n_test_documents", "n_windows_by_split")
             if k in stats}
    print(json.dumps({"seconds": seconds, "n_latents": sae.num_latents, "split": split,
                      "with_top": int(live.sum()),
                      "test_positives": {n: int((counts >= n).sum()) for n in THRESHOLDS},
                      "test_positives_of_explained": {n: int(((counts >= n) & live).sum())
                                                      for n in THRESHOLDS}}))


def run(package_root: Path, args, tmp: Path, collect: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", "--collect", str(collect), "--sae", args.sae,
           "--tmp", str(tmp)]
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, cwd=tmp)
    if res.returncode:
        raise SystemExit(f"mining with {package_root} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--collect")
    p.add_argument("--sae")
    p.add_argument("--synthetic-tokens", type=int, help="instead of --collect/--sae: random fp16 "
                   "shards over documents of 64..4095 tokens and a random TopK SAE (2,304 latents)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tokenizer", help="tokenizer directory (only for a collect artifact "
                   "without documents.parquet)")
    p.add_argument("--old-ref", default="a9458e0", help="git revision of the split-by-window miner")
    p.add_argument("--child", action="store_true")
    p.add_argument("--tmp")
    args = p.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.synthetic_tokens:
            collect, args.sae = synthetic(args.synthetic_tokens, tmp)
        else:
            collect = with_documents(Path(args.collect), args.tokenizer, tmp)
        old = tmp / "old"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.old_ref, "interp"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        runs: dict[str, list[dict]] = {"old": [], "new": []}
        for _ in range(args.repeats):
            for name, root in (("old", old), ("new", ROOT)):
                runs[name].append(run(root, args, tmp, collect))
                print(f"  {name}: {runs[name][-1]['seconds']:.1f}s", flush=True)
        best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
        for name, r in best.items():
            print(f"{name} ({args.old_ref if name == 'old' else 'worktree'}): {r['seconds']:.1f}s, "
                  f"latents with top windows {r['with_top']}/{r['n_latents']}, latents with >= n "
                  f"held-out quantile positives {r['test_positives']} (of those with top "
                  f"windows {r['test_positives_of_explained']}) {r['split']}")
        med = {k: sorted(r["seconds"] for r in v)[len(v) // 2] for k, v in runs.items()}
        print(f"doc_split time ratio new/old = {best['new']['seconds'] / best['old']['seconds']:.2f} "
              f"(fastest runs), {med['new'] / med['old']:.2f} (medians {med['new']:.1f}s / "
              f"{med['old']:.1f}s)")


if __name__ == "__main__":
    main()
