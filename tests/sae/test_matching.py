"""Decoder matching (interp.analysis.match) against a naive NumPy reference, on CPU and, when
present, on a GPU; and the latent_matches rows it builds from two saved SAEs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.analysis.match import COLUMNS, best_matches, decoder_matches
from interp.sae import SAE, save_sae

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def naive_best_matches(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair's cosine in float64, then argmax per row: the definition, unblocked."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    sims = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    return sims.argmax(axis=1), sims.max(axis=1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block", [1, 8, 4096])
def test_best_matches_equals_naive_reference(device, block):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(37, 6)).astype(np.float32), 3 * rng.normal(size=(23, 6)).astype(np.float32)
    idx, cos = best_matches(a, b, device=device, block=block)
    ref_idx, ref_cos = naive_best_matches(a, b)
    assert idx.dtype == np.int64 and cos.dtype == np.float32 and idx.shape == (37,)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(cos, ref_cos, atol=1e-5)


def test_best_matches_finds_planted_copies_and_refuses_other_widths():
    rng = np.random.default_rng(1)
    b = rng.normal(size=(50, 16)).astype(np.float32)
    perm = rng.permutation(50)[:20]
    idx, cos = best_matches(2.5 * b[perm], b, block=7)  # scaled copies: cosine 1, any norm
    np.testing.assert_array_equal(idx, perm)
    np.testing.assert_allclose(cos, 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="widths differ"):
        best_matches(b, b[:, :8])


def test_decoder_matches_rows_both_directions(tmp_path):
    torch.manual_seed(0)
    save_sae(SAE(8, 12, 3), tmp_path / "a")
    save_sae(SAE(8, 20, 3), tmp_path / "b")
    table = decoder_matches(tmp_path / "a", tmp_path / "b", "ka", "kb")
    assert tuple(table.column_names) == COLUMNS and table.num_rows == 12 + 20
    rows = table.to_pylist()
    assert {r["sae_a"] for r in rows[:12]} == {"ka"} and [r["latent_a"] for r in rows[12:]] == list(range(20))
    from interp.analysis.match import load_decoder

    ref_idx, _ = naive_best_matches(load_decoder(tmp_path / "a").numpy(),
                                    load_decoder(tmp_path / "b").numpy())
    assert [r["latent_b"] for r in rows[:12]] == ref_idx.tolist()
