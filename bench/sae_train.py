"""Benchmark interp's TopK SAE training against sparsify's on the same cached activations.

    python bench/sae_train.py [--collect ARTIFACT_DIR] [--tokens 65536] [--threads 1] [--profile]

Both train a TopK SAE of the same width, k, batch, seed and token budget on the same tensors in
memory (a collect artifact's activations, or synthetic Gaussian-mixture data). sparsify's Trainer
needs a live Hugging Face model, so its update rule is replayed around `SparseCoder` as its
Trainer does it (mean b_dec init, unit-norm decoder, AuxK with a dead mask, parallel-gradient
removal, torch Adam with linear warm-up/decay). Prints tokens/s, the ratio, held-out FVU and dead
fraction of each; --profile adds the top ops of a few profiled steps of each.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import time
from collections.abc import Callable

import torch
from torch import Tensor

from interp.sae import SAE, evaluate, geometric_median
from interp.sae.trainer import Trainer, default_lr


def synthetic(n: int, d: int, seed: int) -> Tensor:
    """Gaussian mixture [n, d]: 256 anisotropic clusters plus sparse positive directions."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(256, d, generator=gen) * 2
    dirs = torch.randn(4 * d, d, generator=gen) / math.sqrt(d)
    cluster = torch.randint(0, 256, (n,), generator=gen)
    codes = torch.rand(n, 4 * d, generator=gen).lt(8 / (4 * d)) * torch.rand(n, 4 * d, generator=gen) * 8
    return centres[cluster] + codes @ dirs + 0.5 * torch.randn(n, d, generator=gen)


def load_collect(path: str, n: int) -> Tensor:
    from interp.collect.shards import ActivationShards
    from interp.sae.data import train_batches
    shards = ActivationShards(path)
    x, _ = next(train_batches(shards, n, seed=0, holdout_every=0))
    return x.contiguous()


def run_interp(x: Tensor, args) -> tuple[Callable[[Tensor], None], Callable[[Tensor], dict], Tensor]:
    """(step fn, eval fn, dead mask fn) for interp's TopK SAE."""
    m = args.expansion * x.shape[1]
    sae = SAE(x.shape[1], m, args.k, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        sae.b_dec.copy_(geometric_median(x[:4096]))
    trainer = Trainer(sae, lr=default_lr(m), total_steps=args.steps, auxk_alpha=args.auxk_alpha,
                      dead_tokens=args.dead_tokens)
    return (lambda b: trainer.step(b)), (lambda ev: evaluate(sae, ev)), trainer.dead_mask


def run_sparsify(x: Tensor, args):
    """(step fn, eval fn, dead mask fn) replaying sparsify's Trainer update around SparseCoder."""
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a Triton notice on import
        from sparsify import SparseCoder, SparseCoderConfig
        from transformers import get_linear_schedule_with_warmup
    torch.manual_seed(args.seed)
    sae = SparseCoder(x.shape[1], SparseCoderConfig(expansion_factor=args.expansion, k=args.k))
    with torch.no_grad():
        sae.b_dec.copy_(x[:args.batch].mean(0))  # its first-step init
    opt = torch.optim.Adam(sae.parameters(), lr=default_lr(sae.num_latents))
    sched = get_linear_schedule_with_warmup(opt, min(1000, args.steps // 20), args.steps)
    since = torch.zeros(sae.num_latents, dtype=torch.long)
    seen = [0]

    def step(b: Tensor) -> None:
        sae.set_decoder_norm_to_unit_norm()
        dead = since > args.dead_tokens if seen[0] >= args.dead_tokens else None
        out = sae(b, dead_mask=dead)
        (out.fvu + args.auxk_alpha * out.auxk_loss).backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        sched.step()
        with torch.no_grad():
            since.add_(len(b))
            since[out.latent_indices.flatten()] = 0
        seen[0] += len(b)

    @torch.no_grad()
    def evaluate_sparsify(ev: Tensor) -> dict:
        sae.set_decoder_norm_to_unit_norm()
        acts, idx, _ = sae.encode(ev)
        recon = sae.decode(acts, idx)
        return {"fvu": float((recon - ev).pow(2).sum() / (ev - ev.mean(0)).pow(2).sum()),
                "l0": float((acts > 0).sum(1).float().mean())}

    return step, evaluate_sparsify, (lambda: since >= min(args.dead_tokens, seen[0]))


def train_timed(name: str, make, x: Tensor, ev: Tensor, args) -> dict:
    step, ev_fn, dead_fn = make(x, args)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed + epoch))
        xs = x[perm]
        for b in range(0, len(xs) - args.batch + 1, args.batch):
            step(xs[b:b + args.batch])
    seconds = time.perf_counter() - start
    tokens = args.epochs * (len(x) // args.batch) * args.batch
    res = {"tokens_per_s": tokens / seconds, "seconds": seconds, **ev_fn(ev),
           "dead_frac": float(dead_fn().float().mean())}
    print(f"{name:9s} tokens/s {res['tokens_per_s']:9.0f}  ({seconds:6.1f} s)  heldout fvu "
          f"{res['fvu']:.4f}  l0 {res['l0']:.1f}  dead {res['dead_frac']:.4f}", flush=True)
    if args.profile:
        profile(name, make, x, args)
    return res


def profile(name: str, make, x: Tensor, args, steps: int = 8) -> None:
    step, _, _ = make(x, args)
    step(x[:args.batch])  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(x[i * args.batch:(i + 1) * args.batch])
    print(f"--- {name}: top ops by self CPU time over {steps} steps")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--collect", help="collect artifact directory (default: synthetic data)")
    p.add_argument("--tokens", type=int, default=65_536, help="training tokens (per epoch)")
    p.add_argument("--d", type=int, default=576, help="width of synthetic data")
    p.add_argument("--expansion", type=int, default=4)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--auxk-alpha", type=float, default=1 / 32)
    p.add_argument("--dead-tokens", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    n_eval = 4096
    data = load_collect(args.collect, args.tokens + n_eval) if args.collect else \
        synthetic(args.tokens + n_eval, args.d, args.seed)
    x, ev = data[:-n_eval].contiguous(), data[-n_eval:].contiguous()
    args.steps = args.epochs * (len(x) // args.batch)
    print(f"data: {'collect ' + args.collect if args.collect else 'synthetic'}  tokens {len(x)} "
          f"d {x.shape[1]}  m {args.expansion * x.shape[1]}  k {args.k}  batch {args.batch}  "
          f"epochs {args.epochs}  threads {args.threads}")
    ours = train_timed("interp", run_interp, x, ev, args)
    theirs = train_timed("sparsify", run_sparsify, x, ev, args)
    print(f"speed ratio interp/sparsify: {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x   "
          f"fvu interp {ours['fvu']:.4f} vs sparsify {theirs['fvu']:.4f}")


if __name__ == "__main__":
    main()
