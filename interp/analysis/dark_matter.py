"""The dark_matter stage: how much of an SAE's error is a linear function of its input.

After Engels et al., "Decomposing The Dark Matter of Sparse Autoencoders": the error e = y - ŷ
(y = x for an autoencoder, the target for a transcoder) is regressed on x by ridge regression fit on
training tokens; on held-out tokens we report the R² of the error vector (`r2_error`; the paper:
about half), the R² of its norm ‖e‖ (`r2_norm`; the paper: over 90%) and the nonlinear remainder
e - ê as a share of the error's squared norm (`nonlinear_frac`). Per-token error norms are stored
so a query can list the contexts an SAE reconstructs worst, and two SAEs on the same activations
can be compared token by token (`error_norm_correlation`).

Artifact: sae_error_stats.json and .parquet (one row), token_errors.parquet (sae_key, seq_id,
position, split, error_norm, nonlinear_norm, x_norm, rel_error).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch import Tensor

from interp.artifacts import write_parquet_atomic, write_text_atomic
from interp.collect.shards import ActivationShards
from interp.collect.stream import open_activations
from interp.config import RunConfig
from interp.contract import Stage, StageContext, Table
from interp.sae.data import load_pairs
from interp.sae.model import SAE

VERSION = "1"
FIT_TOKENS = 16_384      # training tokens the ridge map is fit on (caps the stage's cost)
HELDOUT_TOKENS = 8_192   # held-out tokens it is scored on
RIDGE = 1e-4             # ridge penalty relative to the mean eigenvalue of the inputs' covariance


class TokenSet(NamedTuple):
    """Tokens with their provenance: x [N, d_in], y [N, d_out], seq_id [N], position [N]."""

    x: Tensor
    y: Tensor
    seq_id: Tensor
    position: Tensor


def gather_tokens(shards: ActivationShards, target: str | None, holdout_every: int,
                  heldout: bool, max_tokens: int) -> TokenSet:
    """Up to max_tokens tokens (BOS dropped) of the training or held-out sequences, in shard
    order. With holdout_every = 0 every sequence counts as training and none as held out."""
    xs, ys, seqs, poss, total = [], [], [], [], 0
    for i, info in enumerate(shards.shards):
        if total >= max_tokens:
            break
        x, y = load_pairs(shards, i, target)
        ids = torch.arange(info.first_seq, info.first_seq + info.n_seq)
        held = ids % holdout_every == 0 if holdout_every > 0 else torch.zeros_like(ids, dtype=torch.bool)
        keep = held == heldout
        x, y, ids = x[keep, 1:], y[keep, 1:], ids[keep]
        n_seq, width = x.shape[:2]
        xs.append(x.reshape(-1, x.shape[-1]))
        ys.append(y.reshape(-1, y.shape[-1]))
        seqs.append(ids.repeat_interleave(width))
        poss.append(torch.arange(1, width + 1).repeat(n_seq))
        total += len(xs[-1])
    if not xs:
        d_out = shards.d_model
        return TokenSet(torch.empty(0, shards.d_model), torch.empty(0, d_out),
                        torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))
    return TokenSet(*(torch.cat(t)[:max_tokens] for t in (xs, ys, seqs, poss)))


@torch.no_grad()
def sae_errors(sae: SAE, x: Tensor, y: Tensor, batch_size: int = 4096) -> Tensor:
    """e = y - ŷ [N, d_out] under the SAE's inference rule."""
    out = []
    for b in range(0, len(x), batch_size):
        xb = x[b:b + batch_size].to(sae.device, sae.W_dec.dtype)
        out.append(y[b:b + batch_size].float() - sae.reconstruct(xb).float().cpu())
    return torch.cat(out) if out else y.new_zeros(0, y.shape[1])


def ridge_fit(x: Tensor, t: Tensor, ridge: float = RIDGE) -> tuple[Tensor, Tensor]:
    """Ridge regression t ≈ x @ W + b on x [N, d], t [N, p]: (W [d, p], b [p]), in float64.

    The penalty is `ridge` times the mean eigenvalue of x's covariance, so it is scale-free.
    """
    x, t = x.double(), t.double()
    mx, mt = x.mean(0), t.mean(0)
    xc, tc = x - mx, t - mt
    cov = xc.T @ xc
    lam = ridge * float(cov.diagonal().mean().clamp_min(1e-12))
    w = torch.linalg.solve(cov + lam * torch.eye(len(cov), dtype=cov.dtype), xc.T @ tc)
    return w, mt - mx @ w


def r2(t: Tensor, pred: Tensor) -> float:
    """Pooled R² of pred for t (both [N, p] or [N]): 1 - SSE / total variance around t's mean."""
    t, pred = t.double(), pred.double()
    sst = float((t - t.mean(0)).pow(2).sum())
    return 1 - float((t - pred).pow(2).sum()) / max(sst, 1e-300)


def error_stats(x_fit: Tensor, e_fit: Tensor, x_eval: Tensor, e_eval: Tensor,
                ridge: float = RIDGE) -> tuple[dict[str, float], tuple[Tensor, Tensor]]:
    """Fit e ≈ linear(x) and ‖e‖ ≈ linear(x) on the fit tokens; score on the eval tokens.

    Returns the statistics and the linear map (W, b) of the error vector.
    """
    w, b = ridge_fit(x_fit, e_fit, ridge)
    e_hat = x_eval.double() @ w + b
    wn, bn = ridge_fit(x_fit, e_fit.norm(dim=1, keepdim=True), ridge)
    norm_hat = (x_eval.double() @ wn + bn).squeeze(1)
    rest = e_eval.double() - e_hat
    err2 = float(e_eval.double().pow(2).sum())
    x_var = float((x_eval.double() - x_eval.double().mean(0)).pow(2).sum())
    stats = {"r2_error": r2(e_eval, e_hat), "r2_norm": r2(e_eval.norm(dim=1), norm_hat),
             "nonlinear_frac": float(rest.pow(2).sum()) / max(err2, 1e-300),
             "nonlinear_fvu": float(rest.pow(2).sum()) / max(x_var, 1e-300),
             "error_fvu": err2 / max(x_var, 1e-300),
             "mean_error_norm": float(e_eval.norm(dim=1).mean()) if len(e_eval) else 0.0,
             "mean_nonlinear_norm": float(rest.norm(dim=1).mean()) if len(rest) else 0.0}
    return stats, (w, b)


def nonlinear_norms(x: Tensor, e: Tensor, wb: tuple[Tensor, Tensor]) -> Tensor:
    """‖e - ê‖ [N]: the part of each token's error that the linear map does not predict."""
    return (e.double() - (x.double() @ wb[0] + wb[1])).norm(dim=1).float()


def _token_table(sae_key: str, split: str, toks: TokenSet, e: Tensor, rest_norm: Tensor) -> pa.Table:
    x_norm, e_norm = toks.x.norm(dim=1), e.norm(dim=1)
    return pa.table({
        "sae_key": pa.array([sae_key] * len(e), pa.string()),
        "seq_id": pa.array(toks.seq_id.numpy(), pa.int32()),
        "position": pa.array(toks.position.numpy(), pa.int16()),
        "split": pa.array([split] * len(e), pa.string()),
        "error_norm": pa.array(e_norm.numpy(), pa.float32()),
        "nonlinear_norm": pa.array(rest_norm.numpy(), pa.float32()),
        "x_norm": pa.array(x_norm.numpy(), pa.float32()),
        "rel_error": pa.array((e_norm / x_norm.clamp_min(1e-12)).numpy(), pa.float32()),
    })


def analyse(sae: SAE, shards: ActivationShards, holdout_every: int, sae_key: str,
            out: Path) -> dict[str, Any]:
    """Write the dark-matter statistics and per-token error norms of `sae` on `shards` into out."""
    neurons = sae.cfg["architecture"] == "neurons"  # target = the MLP output, exact from x
    target = sae.cfg.get("hookpoint_out") if sae.transcode and not neurons else None
    fit = gather_tokens(shards, target, holdout_every, False, FIT_TOKENS)
    held = gather_tokens(shards, target, holdout_every, True, HELDOUT_TOKENS)
    if neurons:
        from interp.sae.neurons import mlp_output
        fit, held = (t._replace(y=mlp_output(sae, t.x).cpu()) for t in (fit, held))
    split = "heldout"
    if len(held.x) == 0:  # no held-out sequences: score on the fit tokens and say so
        held, split = fit, "train"
    e_fit, e_held = sae_errors(sae, fit.x, fit.y), sae_errors(sae, held.x, held.y)
    stats, wb = error_stats(fit.x, e_fit, held.x, e_held)
    tables = [_token_table(sae_key, "train", fit, e_fit, nonlinear_norms(fit.x, e_fit, wb))]
    if split == "heldout":
        tables.append(_token_table(sae_key, "heldout", held, e_held,
                                   nonlinear_norms(held.x, e_held, wb)))
    table = pa.concat_tables(tables).sort_by([("seq_id", "ascending"), ("position", "ascending")])
    write_parquet_atomic(table, out / "token_errors.parquet")
    row = {"sae_key": sae_key, "hookpoint": shards.hookpoint, "eval_split": split,
           "fit_tokens": len(fit.x), "eval_tokens": len(held.x), "ridge": RIDGE, **stats}
    write_text_atomic(out / "sae_error_stats.json", json.dumps(row, indent=2))
    write_parquet_atomic(pa.Table.from_pylist([row]), out / "sae_error_stats.parquet")
    return row


def error_norm_correlation(a: Path | pa.Table, b: Path | pa.Table,
                           split: str | None = "heldout") -> dict[str, float]:
    """Pearson and Spearman correlation of two SAEs' per-token error norms on the tokens both
    scored (joined on seq_id, position); a, b: token_errors tables or dark_matter artifact dirs.

    Both norms grow with the input's norm ‖x‖, so their raw correlation is high for any two SAEs
    (the paper reads it as larger SAEs struggling on the same tokens). `pearson_given_x_norm` is
    the partial correlation with ‖x‖ held fixed, and `pearson_rel_error` that of the relative
    errors ‖e‖ / ‖x‖: what the two SAEs share beyond the input's size."""
    ta, tb = (pq.read_table(Path(t) / "token_errors.parquet") if not isinstance(t, pa.Table) else t
              for t in (a, b))
    if split is not None:
        ta, tb = (t.filter(pc.equal(t["split"], split)) for t in (ta, tb))
    keys = ["seq_id", "position"]
    joined = ta.select([*keys, "error_norm", "x_norm"]).join(
        tb.select([*keys, "error_norm"]).rename_columns([*keys, "error_norm_b"]), keys=keys)
    u = torch.tensor(joined["error_norm"].to_numpy(), dtype=torch.float64)
    v = torch.tensor(joined["error_norm_b"].to_numpy(), dtype=torch.float64)
    x = torch.tensor(joined["x_norm"].to_numpy(), dtype=torch.float64)
    r_uv, r_ux, r_vx = _pearson(u, v), _pearson(u, x), _pearson(v, x)
    denom = ((1 - r_ux ** 2) * (1 - r_vx ** 2)) ** 0.5
    return {"pearson": r_uv, "spearman": _pearson(_ranks(u), _ranks(v)),
            "pearson_given_x_norm": (r_uv - r_ux * r_vx) / denom if denom > 0 else 0.0,
            "pearson_rel_error": _pearson(u / x.clamp_min(1e-12), v / x.clamp_min(1e-12)),
            "n_tokens": len(u)}


def _ranks(v: Tensor) -> Tensor:
    out = torch.empty_like(v)
    out[v.argsort()] = torch.arange(len(v), dtype=v.dtype)
    return out


def _pearson(u: Tensor, v: Tensor) -> float:
    u, v = u - u.mean(), v - v.mean()
    return float((u * v).sum() / (u.norm() * v.norm()).clamp_min(1e-300))


def settings(cfg: RunConfig) -> dict[str, Any]:
    return {"fit_tokens": FIT_TOKENS, "heldout_tokens": HELDOUT_TOKENS, "ridge": RIDGE,
            "holdout_every": cfg.sae.holdout_every}


def fill(ctx: StageContext) -> dict[str, Any]:
    """The dark_matter stage: error statistics of the train artifact's SAE on its activations."""
    from interp.sae.io import load_sae

    cfg, collect, train = ctx.cfg, ctx.input("collect"), ctx.input("train")
    shards = open_activations(cfg, collect.path)  # 'tokens': recomputed, bounded prefix
    sae = load_sae(train.path)
    holdout = cfg.sae.holdout_every if shards.n_sequences >= 2 * cfg.sae.holdout_every else 0
    row = analyse(sae, shards, holdout, train.key, ctx.out)
    return {"collect": collect.key, "train": train.key, "stats": row}


STAGE = Stage("dark_matter", VERSION, settings, fill, inputs=("collect", "train"), tables=(
    Table("sae_error_stats", "sae_error_stats.parquet",
          provenance=(("dark_matter_key", "dark_matter"),)),
    Table("token_errors", "token_errors.parquet")))
