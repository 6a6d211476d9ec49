"""Mining at scale: a synthetic TopK SAE (d=576) over synthetic fp16 activation shards.

For each width, in one run, every measurement in a fresh subprocess (clean peak RSS, read from the
child's own ru_maxrss):
  encode   one bare encoder pass over the same shards (read, upcast, sae.encode, discard)
  mine     mine_into with the default MineConfig (no budget)
  budget   mine_into with mine.memory_budget_mb set
  old      (--old-ref, smallest width only) the miner of that git revision, side by side
Prints mine tok/s / encode tok/s (target >= 0.5), peak RSS (target <= 1.5 GB at 65,536 latents)
and peak RSS under the budget (must stay below it).

    python bench/mine_scale.py                      # 262,144 tokens at 2,304 and 65,536 latents
    python bench/mine_scale.py --widths 2304 --old-ref 10e22f6
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

D, K, SEQ_LEN, SHARD_SEQS = 576, 32, 65, 256
THREADS = 1
ROOT = Path(__file__).resolve().parents[1]


def make_shards(path: Path, n_tokens: int) -> None:
    """fp16 shards of standard-normal activations (collect's default dtype and layout)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from safetensors.torch import save_file

    from interp.collect.documents import write_documents

    path.mkdir(parents=True, exist_ok=True)
    n_seq = n_tokens // (SEQ_LEN - 1)
    gen = torch.Generator().manual_seed(0)
    shards = []
    for i, first in enumerate(range(0, n_seq, SHARD_SEQS)):
        n = min(SHARD_SEQS, n_seq - first)
        name = f"shard-{i:05d}.safetensors"
        save_file({"acts": torch.randn(n, SEQ_LEN, D, generator=gen).half(),
                   "tokens": torch.ones(n, SEQ_LEN, dtype=torch.int32)}, str(path / name))
        shards.append({"file": name, "first_seq": first, "n_seq": n})
    pq.write_table(pa.table({"seq_id": list(range(n_seq)),
                             "tokens": [[1] * SEQ_LEN] * n_seq,
                             "token_str": [["x"] * SEQ_LEN] * n_seq}), path / "sequences.parquet")
    # Documents of 64..4095 tokens (the embedded Wikipedia sample's run 758..19,180): mining
    # splits train/test by document.
    lengths = torch.randint(64, 4096, (n_seq * (SEQ_LEN - 1) // 64 + 1,), generator=gen)
    starts = torch.cumsum(lengths, 0) - lengths
    write_documents(starts[starts < n_seq * (SEQ_LEN - 1)], n_seq * (SEQ_LEN - 1), path)
    (path / "manifest.json").write_text(json.dumps({
        "d_model": D, "seq_len": SEQ_LEN, "n_sequences": n_seq, "hookpoint": "synthetic",
        "dtype": "float16", "shards": shards}))


def child(args: argparse.Namespace) -> None:
    """One measurement; prints a JSON line with seconds and peak RSS."""
    import resource

    import torch

    from interp.collect.shards import ActivationShards
    from interp.mine.codes import iter_encoded
    from interp.mine.config import MineConfig
    from interp.mine.stage import plan_memory
    from interp.sae.model import SAE

    torch.set_num_threads(args.threads)
    shards = ActivationShards(Path(args.shards))
    sae = SAE(D, args.width, K, generator=torch.Generator().manual_seed(1))
    sae.requires_grad_(False)
    cfg = MineConfig(memory_budget_mb=args.budget, threads=args.threads)
    out = Path(tempfile.mkdtemp(dir=args.tmp))
    t0 = time.perf_counter()
    info: dict = {}
    if args.what == "encode":  # the same chunking the miner uses without a budget
        seqs = plan_memory(args.width, SEQ_LEN, MineConfig()).encode_seqs
        for _ in iter_encoded(sae, shards, seqs, "cpu"):
            pass
        info["encode_sequences"] = seqs
    elif args.what == "old":
        import importlib.util
        spec = importlib.util.spec_from_file_location("old_mining", args.old_file)
        old = importlib.util.module_from_spec(spec)
        sys.modules["old_mining"] = old  # dataclasses look their module up while being defined
        spec.loader.exec_module(old)
        old.mine_into(sae, shards, cfg, out)
    else:
        from interp.mine.stage import mine_into
        info = mine_into(sae, shards, cfg, out)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak_rss_mb": rss, "info": info}))


def measure(what: str, width: int, shards: Path, tmp: Path, budget: int | None = None,
            old_file: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--width", str(width), "--shards", str(shards),
           "--tmp", str(tmp), "--threads", str(THREADS)]
    if budget:
        cmd += ["--budget", str(budget)]
    if old_file:
        cmd += ["--old-file", old_file]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode:
        raise RuntimeError(f"{what} at {width} failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    # One line per measurement as it lands, so a long run's partial results are usable.
    print(f"  [{what}{' budget=' + str(budget) if budget else ''} width={width}] "
          f"{out['seconds']:.1f}s peak_rss={out['peak_rss_mb']:.0f} MB", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=262_144)
    p.add_argument("--widths", type=int, nargs="+", default=[2304, 65536])
    p.add_argument("--budgets", type=int, nargs="+", default=[600, 1000],
                   help="mine.memory_budget_mb per width (MiB)")
    p.add_argument("--old-ref", default=None, help="git revision whose interp/mine/stage.py to compare")
    p.add_argument("--child", default=None)
    p.add_argument("--width", type=int)
    p.add_argument("--shards")
    p.add_argument("--tmp")
    p.add_argument("--budget", type=int, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch threads of every measurement "
                   "(mine.threads' default; 1 is fastest on the shared 2-core machine)")
    p.add_argument("--old-file", default=None)
    args = p.parse_args()
    if args.child:
        return child(argparse.Namespace(**{**vars(args), "what": args.child}))
    global THREADS
    THREADS = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        make_shards(tmp / "shards", args.tokens)
        n_tok = (args.tokens // (SEQ_LEN - 1)) * (SEQ_LEN - 1)
        print(f"mine_scale: {n_tok:,} tokens (fp16 shards, d={D}), TopK k={K}, "
              f"{os.cpu_count()} CPUs, torch threads {args.threads}; shards written in "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
        old_file = args.old_file  # a copy of an old interp/mine/stage.py, or one from --old-ref
        if args.old_ref and not old_file:
            old_file = str(tmp / "old_mining.py")
            src = subprocess.run(["git", "-C", str(ROOT), "show", f"{args.old_ref}:interp/mine/stage.py"],
                                 capture_output=True, text=True, check=True).stdout
            Path(old_file).write_text(src)
        summary = []
        for width, budget in zip(args.widths, args.budgets * len(args.widths)):
            enc = measure("encode", width, tmp / "shards", tmp)
            mine = measure("mine", width, tmp / "shards", tmp)
            bud = measure("mine", width, tmp / "shards", tmp, budget=budget)
            ratio = enc["seconds"] / mine["seconds"]
            print(f"width={width:>6}: encode {n_tok / enc['seconds']:>8.0f} tok/s "
                  f"({enc['seconds']:.1f}s, rss {enc['peak_rss_mb']:.0f} MB) | "
                  f"mine {n_tok / mine['seconds']:>8.0f} tok/s ({mine['seconds']:.1f}s) "
                  f"ratio={ratio:.2f} peak_rss={mine['peak_rss_mb']:.0f} MB "
                  f"ranges={mine['info']['n_ranges']} spill={mine['info']['spill_mb']} MB "
                  f"phases={mine['info']['phase_seconds']} | budget {budget} MB: "
                  f"peak_rss={bud['peak_rss_mb']:.0f} MB ranges={bud['info']['n_ranges']} "
                  f"({bud['seconds']:.1f}s) {'UNDER' if bud['peak_rss_mb'] < budget else 'OVER'}",
                  flush=True)
            if old_file and width == min(args.widths):
                label = args.old_ref or old_file
                old = measure("old", width, tmp / "shards", tmp, old_file=old_file)
                print(f"width={width:>6}: old miner ({label}) {n_tok / old['seconds']:.0f} tok/s "
                      f"({old['seconds']:.1f}s) ratio={enc['seconds'] / old['seconds']:.2f} "
                      f"peak_rss={old['peak_rss_mb']:.0f} MB; new/old speed "
                      f"{old['seconds'] / mine['seconds']:.2f}x", flush=True)
            summary.append(f"w{width}_ratio={ratio:.2f} w{width}_rss_mb={mine['peak_rss_mb']:.0f} "
                           f"w{width}_budget_rss_mb={bud['peak_rss_mb']:.0f}/{budget}")
        print("mine_scale " + " ".join(summary))


if __name__ == "__main__":
    main()
