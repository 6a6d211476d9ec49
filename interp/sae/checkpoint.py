"""Resumable training checkpoints: SAE weights, optimiser/schedule/usage state, data position.

A checkpoint directory holds `sae.safetensors` (training-scale weights, before any scale folding)
and `trainer.pt`. It is replaced atomically: written beside as `checkpoint.tmp`, swapped in by
renames, so a crash leaves either the previous or the new checkpoint, never a half-written one.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from interp.sae.trainer import Trainer

WEIGHTS, STATE = "sae.safetensors", "trainer.pt"


def save_checkpoint(directory: Path, trainer: Trainer, position: dict[str, Any]) -> None:
    """Write the trainer's SAE and state plus `position` (epoch, batch, ...) to directory."""
    directory = Path(directory)
    tmp, old = directory.with_name(directory.name + ".tmp"), directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in trainer.sae.state_dict().items()},
              str(tmp / WEIGHTS))
    torch.save({"trainer": trainer.state_dict(), "position": position, "cfg": trainer.sae.cfg},
               tmp / STATE)
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: Path, sae: Any, trainer: Trainer) -> dict[str, Any] | None:
    """Restore sae and trainer from directory (or its `.old` twin after an interrupted swap).

    Returns the saved position, or None when there is no checkpoint.
    """
    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        if (candidate / STATE).is_file() and (candidate / WEIGHTS).is_file():
            break
    else:
        return None
    state = torch.load(candidate / STATE, map_location=sae.device, weights_only=True)
    saved = state["cfg"]
    for key in ("architecture", "d_in", "num_latents", "k", "transcode"):
        if saved.get(key) != sae.cfg.get(key):
            raise ValueError(f"checkpoint {candidate} has {key}={saved.get(key)!r} but this run "
                             f"has {sae.cfg.get(key)!r}; delete the checkpoint to start over")
    sae.load_state_dict(load_file(str(candidate / WEIGHTS), device=str(sae.device)))
    trainer.load_state_dict(state["trainer"])
    return state["position"]
