"""SAE module: shapes, kernels against naive references, save/load round trip."""
from __future__ import annotations

import torch

from interp.sae import SAE, load_sae, save_sae
from interp.sae.kernels import (
    dense_decode_reference,
    gather_preacts,
    rows_dot,
    rows_dot_reference,
    scatter_rows,
    scatter_rows_reference,
    sparse_decode,
)


def _sae(d: int = 16, m: int = 64, k: int = 4, seed: int = 0) -> SAE:
    sae = SAE(d, m, k, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # non-trivial biases so that tests exercise them
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(seed + 1))
        sae.encoder.bias.normal_(std=0.1, generator=torch.Generator().manual_seed(seed + 2))
    return sae


def test_shapes_and_properties():
    sae = _sae()
    x = torch.randn(10, 16)
    acts, idx = sae.encode(x)
    assert acts.shape == (10, 4) and idx.shape == (10, 4) and idx.dtype == torch.int64
    assert (acts >= 0).all()
    dense = sae.encode_dense(x)
    assert dense.shape == (10, 64) and ((dense > 0).sum(1) <= 4).all()
    out = sae(x)
    assert out.recon.shape == (10, 16) and out.fvu.ndim == 0 and out.auxk_loss.item() == 0
    assert (sae.d_in, sae.num_latents, sae.k) == (16, 64, 4)
    assert sae.cfg["architecture"] == "topk"
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64))


def test_encode_matches_dense_reference():
    sae, x = _sae(), torch.randn(20, 16)
    pre = torch.relu((x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias)
    ref = torch.zeros_like(pre).scatter_(1, pre.topk(4, dim=1).indices,
                                         pre.topk(4, dim=1).values)
    assert torch.allclose(sae.encode_dense(x), ref, atol=1e-5)


def test_decode_equals_dense_reference():
    sae, x = _sae(), torch.randn(12, 16)
    acts, idx = sae.encode(x)
    ref = sae.encode_dense(x) @ sae.W_dec + sae.b_dec
    assert torch.allclose(sae.decode(acts, idx), ref, atol=1e-5)
    assert torch.allclose(sparse_decode(acts, idx, sae.W_dec),
                          dense_decode_reference(acts, idx, sae.W_dec), atol=1e-5)


def test_sparse_gradients_match_dense_autograd():
    """Backward of the sparse kernels equals plain autograd through dense ops."""
    torch.manual_seed(0)
    n, d, m, k = 9, 8, 32, 5
    x, w, b = torch.randn(n, d), torch.randn(m, d), torch.randn(m)
    w_dec, idx = torch.randn(m, d), torch.randint(0, m, (n, k))
    grads = []
    for sparse in (True, False):
        leaves = [t.clone().requires_grad_() for t in (x, w, b, w_dec)]
        xl, wl, bl, wdl = leaves
        if sparse:
            with torch.no_grad():
                vals = (x @ w.T + b).gather(1, idx)
            acts = torch.relu(gather_preacts(xl, None, wl, bl, idx, vals))
            out = sparse_decode(acts, idx, wdl)
        else:
            acts = torch.relu((xl @ wl.T + bl).gather(1, idx))
            out = dense_decode_reference(acts, idx, wdl)
        (out.sin().sum()).backward()
        grads.append([t.grad for t in leaves])
    for gs, gd in zip(*grads):
        assert torch.allclose(gs, gd, atol=1e-4)


def test_scatter_rows_matches_reference():
    torch.manual_seed(1)
    idx, vals, rows = torch.randint(0, 40, (30, 6)), torch.randn(30, 6), torch.randn(30, 7)
    assert torch.allclose(scatter_rows(idx, vals, rows, 40),
                          scatter_rows_reference(idx, vals, rows, 40), atol=1e-5)


def test_auxk_loss_trains_dead_encoders():
    sae, x = _sae(), torch.randn(32, 16)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[:40] = True
    out = sae(x, dead_mask=dead)
    assert out.auxk_loss.item() > 0
    out.auxk_loss.backward()
    # unlike sparsify 1.3.3 (whose fused encoder drops this gradient), dead encoders learn
    assert sae.encoder.weight.grad[:40].abs().sum() > 0
    assert sae.encoder.weight.grad[40:].abs().sum() == 0


def test_save_load_round_trip(tmp_path):
    sae = _sae()
    sae.cfg["hookpoint"] = "blocks.3.hook_resid_post"
    save_sae(sae, tmp_path / "s")
    assert {p.name for p in (tmp_path / "s").iterdir()} == {"sae.safetensors", "cfg.json"}
    back = load_sae(tmp_path / "s")
    x = torch.randn(5, 16)
    assert torch.equal(back(x).recon, sae(x).recon)
    assert back.cfg["hookpoint"] == "blocks.3.hook_resid_post"
    for name, p in sae.state_dict().items():
        assert torch.equal(back.state_dict()[name], p)


def test_sparsify_can_load_our_save(tmp_path):
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):  # sparsify prints a Triton notice on import
        from sparsify import SparseCoder
    sae = _sae()
    save_sae(sae, tmp_path / "s")
    theirs = SparseCoder.load_from_disk(tmp_path / "s")
    x = torch.randn(6, 16)
    assert torch.allclose(theirs(x).sae_out, sae(x).recon, atol=1e-5)
    theirs.save_to_disk(tmp_path / "t")
    assert torch.allclose(load_sae(tmp_path / "t")(x).recon, sae(x).recon, atol=1e-5)


def test_rows_dot_matches_reference_with_duplicate_indices():
    torch.manual_seed(2)
    a, table = torch.randn(7, 5), torch.randn(11, 5)
    idx = torch.randint(0, 11, (7, 6))
    idx[:, :2] = 0  # padding slots repeat column 0
    assert torch.allclose(rows_dot(a, table, idx), rows_dot_reference(a, table, idx), atol=1e-5)


def test_b_dec_gradient_through_encoder_matches_dense():
    """gather_preacts' shortcut grad for b_dec (-grad_b @ W) equals autograd through x - b_dec."""
    torch.manual_seed(3)
    n, d, m, k = 10, 6, 24, 4
    x, w, b, b_dec = torch.randn(n, d), torch.randn(m, d), torch.randn(m), torch.randn(d)
    idx = torch.randint(0, m, (n, k))
    grads = []
    for sparse in (True, False):
        leaves = [t.clone().requires_grad_() for t in (w, b, b_dec)]
        wl, bl, bdl = leaves
        if sparse:
            with torch.no_grad():
                vals = ((x - b_dec) @ w.T + b).gather(1, idx)
            out = gather_preacts(x, bdl, wl, bl, idx, vals)
        else:
            out = ((x - bdl) @ wl.T + bl).gather(1, idx)
        out.pow(3).sum().backward()
        grads.append([t.grad for t in leaves])
    for gs, gd in zip(*grads):
        assert torch.allclose(gs, gd, atol=1e-4)
