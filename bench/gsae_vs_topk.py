"""g-SAE against TopK at equal width and k, trained on the same activations (one collect).

    python bench/gsae_vs_topk.py [--home DIR] [--latents 32] [--threads 1] [--set sae.k=16 ...]

Collects the default run's activations with loss gradients (sae.architecture gsae), trains a g-SAE
and a TopK SAE on them, and prints, per SAE: held-out FVU, L0, dead fraction, CE loss recovered
and KL with the SAE spliced in (inference rule: plain TopK for both), the g-SAE's CE and KL when
its training-time gradient selection is also used at evaluation (gradients from the shards), and
how far a latent's decoder direction moves the next-token distribution: the mean KL(clean ||
steered) when `--scale` x the mean activation norm times a unit decoder row is added at every
position of a few held-out sequences, over `--latents` random live latents (the paper's steering
claim, measured the same way for both SAEs). Runs the stages through the artifact store, so a
second run reuses the collect and the SAEs.
"""
from __future__ import annotations

import argparse
import json

import torch
from safetensors.torch import load_file

from interp.collect.shards import ActivationShards, gradient_tensor_name
from interp.config import build_config
from interp.models import load_model
from interp.sae.arch.gsae import gradient_scores
from interp.sae.eval import _compare
from interp.sae.io import load_sae
from interp.stages import build


def heldout(shards: ActivationShards, every: int, n: int) -> tuple[torch.Tensor, ...]:
    """(tokens [n, T], acts [n, T, d], grads [n, T, d]) of the first n held-out sequences."""
    toks, acts, grads = [], [], []
    for s in shards.shards:
        t = load_file(str(shards.path / s.file))
        keep = torch.arange(s.first_seq, s.first_seq + s.n_seq) % every == 0
        toks.append(t["tokens"].long()[keep])
        acts.append(t["acts"].float()[keep])
        grads.append(t[gradient_tensor_name(shards.hookpoint)].float()[keep])
    return tuple(torch.cat(x)[:n] for x in (toks, acts, grads))


def gradient_splice_eval(run, sae, tokens, grads, batch: int = 8) -> dict[str, float]:
    """CE / KL with the g-SAE's gradient-aware selection used at evaluation too."""
    beta = float(sae.cfg.get("gsae_beta", 1.0))
    out = {"ce_clean": 0.0, "ce_spliced": 0.0, "ce_zero": 0.0, "kl": 0.0}
    for b in range(0, len(tokens), batch):
        tok, g = tokens[b:b + batch], grads[b:b + batch, 1:].reshape(-1, sae.d_in)

        def splice(acts, g=g):
            flat = acts[:, 1:].reshape(-1, sae.d_in)
            pre = sae.pre_acts(flat)
            idx = gradient_scores(pre, sae.W_dec, g, beta).topk(sae.k, dim=1).indices
            new = acts.clone()
            new[:, 1:] = sae.decode(pre.gather(1, idx).relu(), idx).reshape(new[:, 1:].shape)
            return new

        def zero(acts):
            new = acts.clone()
            new[:, 1:] = 0
            return new
        part = _compare(run(tok, None), run(tok, splice), run(tok, zero), tok, 1)
        for k in out:
            out[k] += part[k] * len(tok) / len(tokens)
    gap = out["ce_zero"] - out["ce_clean"]  # pooled like interp.sae.stage._downstream
    return {**out, "ce_loss_recovered": (out["ce_zero"] - out["ce_spliced"]) / gap if gap else None}


@torch.no_grad()
def steering_kl(run, sae, tokens, norm: float, n_latents: int, live: torch.Tensor) -> dict:
    """Mean / median over random live latents of KL(clean || steered) per token."""
    gen = torch.Generator().manual_seed(0)
    pick = live.nonzero().squeeze(1)
    pick = pick[torch.randperm(len(pick), generator=gen)[:n_latents]]
    logp = run(tokens, None).log_softmax(-1)
    kls = []
    for j in pick.tolist():
        direction = norm * sae.W_dec[j] / sae.W_dec[j].norm()

        def steer(acts, direction=direction):
            new = acts.clone()
            new[:, 1:] += direction.reshape(new.shape[2:]).to(new.dtype)
            return new
        steered = run(tokens, steer).log_softmax(-1)
        kls.append(float((logp.exp() * (logp - steered)).sum(-1)[:, 1:].mean()))
    kls_t = torch.tensor(kls)
    return {"steer_kl_mean": float(kls_t.mean()), "steer_kl_median": float(kls_t.median()),
            "steer_latents": len(kls)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default="gsae-bench")
    ap.add_argument("--latents", type=int, default=32)
    ap.add_argument("--steer-sequences", type=int, default=4)
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a "
                    "busy 2-core machine: a second thread waits for a descheduled core)")
    ap.add_argument("--set", nargs="*", default=[], help="dotted config overrides, key=value")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    over = dict(kv.split("=", 1) for kv in args.set)
    over = {k: json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
            for k, v in over.items()}
    base = {"home": args.home}
    gsae_cfg = build_config(base, {**over, "sae.architecture": "gsae"})
    topk_cfg = build_config(base, {**over, "sae.architecture": "topk"})
    model = load_model(gsae_cfg.model, gsae_cfg.home)
    ref = build(gsae_cfg, "collect", {}, progress=True)
    shards = ActivationShards(ref.path)
    every = gsae_cfg.sae.holdout_every
    tokens, acts, grads = heldout(shards, every, gsae_cfg.sae.eval_sequences)
    norm = args.scale * float(acts[:, 1:].norm(dim=-1).mean())
    run = model.run_model(shards.hookpoint)
    report = {"collect_seconds": shards.meta.get("seconds")}
    for name, cfg in (("topk", topk_cfg), ("gsae", gsae_cfg)):
        art = build(cfg, "train", {"collect": ref}, progress=True)
        metrics = json.loads((art.path / "metrics.json").read_text())
        sae = load_sae(art.path)
        live = sae.encode_dense(acts[:, 1:].reshape(-1, sae.d_in)).gt(0).any(0)
        row = {k: metrics.get(k) for k in ("fvu", "l0", "dead_frac", "ce_loss_recovered",
                                           "kl_div", "ce_clean", "ce_spliced", "train_seconds")}
        row.update(steering_kl(run, sae, tokens[:args.steer_sequences], norm, args.latents, live))
        if name == "gsae":
            row["with_gradient_at_eval"] = gradient_splice_eval(run, sae, tokens, grads)
        report[name] = row
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
