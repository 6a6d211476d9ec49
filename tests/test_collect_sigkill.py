"""SIGKILL in the middle of collect (real embedded model, after the first shard is written), then
a re-run: one complete artifact, equal to an uninterrupted collect, and no temp directory left."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # the real subject model in a SIGKILLed child

CHILD = r"""
import os, pathlib, sys, time
from interp.config import build_config
import interp.collect.stage as act

home, models, hold = sys.argv[1], sys.argv[2], sys.argv[3] == "hold"
if hold:
    real_save = act.save_file
    def save_then_park(*a, **k):
        real_save(*a, **k)
        pathlib.Path(home, "parked").write_text("1")
        time.sleep(600)
    act.save_file = save_then_park
cfg = build_config({"home": home, "model": {"cache_dir": models},
                    "corpus": {"n_tokens": 384, "seq_len": 33},
                    "collect": {"batch_size": 4, "shard_sequences": 4},
                    "mine": {"window": 16, "n_top": 5}, "explain": {"n_examples": 3}})
from interp.stages import build
print(build(cfg, "collect", {}).key)
"""


def _child(home: Path, models: Path, mode: str) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-c", CHILD, str(home), str(models), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_sigkill_mid_collect_then_rerun(tmp_path, model_cache):
    home = tmp_path / "home"
    child = _child(home, model_cache, "hold")
    deadline = time.time() + 240
    while not (home / "parked").exists():
        assert child.poll() is None, child.stderr.read()[-2000:]
        assert time.time() < deadline, "collect never wrote its first shard"
        time.sleep(0.2)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    collect_dir = home / "artifacts" / "collect"
    assert not any((d / "manifest.json").exists() for d in collect_dir.iterdir())  # nothing half-done
    assert any(".tmp-" in d.name for d in collect_dir.iterdir())

    rerun = _child(home, model_cache, "run")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    key = out.strip().splitlines()[-1]
    art = collect_dir / key
    assert (art / "manifest.json").exists()
    assert sorted(d.name for d in collect_dir.iterdir() if d.is_dir()) == [key]  # stale temp removed
    shards = sorted(art.glob("shard-*.safetensors"))
    assert len(shards) == 3  # 12 sequences of 4
    clean = tmp_path / "clean"
    again = _child(clean, model_cache, "run")
    out2, err2 = again.communicate(timeout=300)
    assert again.returncode == 0 and out2.strip().splitlines()[-1] == key, err2[-2000:]
    for s in shards:
        a, b = load_file(str(s)), load_file(str(clean / "artifacts" / "collect" / key / s.name))
        assert (a["tokens"] == b["tokens"]).all() and (a["acts"] - b["acts"]).abs().max() < 1e-4
