"""Formats: sparsify-native and SAELens save/load, detection, compatibility errors."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from interp.sae import SAE, check_compatible, detect_format, load_any_sae, load_sae, save_sae, save_saelens


def _sae(**kw) -> SAE:
    return SAE(8, 32, 3, cfg={"hookpoint": "blocks.1.hook_resid_post"},
               generator=torch.Generator().manual_seed(0), **kw)


def test_saelens_round_trip_and_layout(tmp_path):
    sae = _sae()
    save_saelens(sae, tmp_path / "lens")
    cfg = json.loads((tmp_path / "lens" / "cfg.json").read_text())
    assert cfg["d_in"] == 8 and cfg["d_sae"] == 32 and cfg["architecture"] == "topk"
    assert cfg["hook_name"] == cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    assert detect_format(tmp_path / "lens") == "saelens"
    back = load_any_sae(tmp_path / "lens")
    x = torch.randn(5, 8)
    assert torch.allclose(back.decode(*back.encode(x)), sae.decode(*sae.encode(x)), atol=1e-6)


def test_foreign_saelens_standard_sae_is_converted_exactly(tmp_path):
    """A SAELens 'standard' SAE with apply_b_dec_to_input=False: relu(x W_enc + b_enc) W_dec + b_dec."""
    g = torch.Generator().manual_seed(1)
    w_enc, b_enc = torch.randn(8, 20, generator=g), torch.randn(20, generator=g)
    w_dec, b_dec = torch.randn(20, 8, generator=g), torch.randn(8, generator=g)
    (tmp_path / "std").mkdir()
    save_file({"W_enc": w_enc, "b_enc": b_enc, "W_dec": w_dec, "b_dec": b_dec},
              str(tmp_path / "std" / "sae_weights.safetensors"))
    (tmp_path / "std" / "cfg.json").write_text(json.dumps({
        "architecture": "standard", "d_in": 8, "d_sae": 20, "apply_b_dec_to_input": False,
        "metadata": {"hook_name": "blocks.2.hook_resid_post", "model_name": "m"}}))
    sae = load_any_sae(tmp_path / "std")
    x = torch.randn(6, 8)
    ref = torch.relu(x @ w_enc + b_enc) @ w_dec + b_dec
    assert sae.cfg["architecture"] == "relu" and sae.cfg["hookpoint"] == "blocks.2.hook_resid_post"
    assert torch.allclose(sae.decode(*sae.encode(x)), ref, atol=1e-4)


def test_load_any_sae_picks_hookpoint_subdirectory(tmp_path):
    sae = _sae()
    save_sae(sae, tmp_path / "ckpt" / "layers.3")
    with pytest.raises(FileNotFoundError, match="hookpoint="):
        load_any_sae(tmp_path / "ckpt")
    assert load_any_sae(tmp_path / "ckpt", hookpoint="layers.3").num_latents == 32
    with pytest.raises(FileNotFoundError, match="neither"):
        load_any_sae(tmp_path / "nothing-here")


def test_shape_mismatch_is_a_clear_error(tmp_path):
    save_sae(_sae(), tmp_path / "s")
    tensors = {"encoder.weight": torch.randn(32, 8), "encoder.bias": torch.randn(32),
               "W_dec": torch.randn(31, 8), "b_dec": torch.randn(8)}
    save_file(tensors, str(tmp_path / "s" / "sae.safetensors"))
    with pytest.raises(ValueError, match="W_dec"):
        load_sae(tmp_path / "s")


def test_check_compatible():
    sae = _sae()
    check_compatible(sae, 8, "blocks.1.hook_resid_post")
    with pytest.raises(ValueError, match="width 8"):
        check_compatible(sae, 16, "blocks.1.hook_resid_post")
    with pytest.raises(ValueError, match="trained on hookpoint"):
        check_compatible(sae, 8, "blocks.2.hook_resid_post")


def test_transcoder_saves_in_native_format_only(tmp_path):
    tc = SAE(8, 32, 3, transcode=True, d_out=6)
    back = load_sae(save_sae(tc, tmp_path / "tc"))
    assert back.transcode and back.d_out == 6 and back.W_dec.shape == (32, 6)
    with pytest.raises(ValueError, match="transcoder"):
        save_saelens(tc, tmp_path / "lens")
