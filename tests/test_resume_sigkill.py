"""SIGKILL in the middle of each stage (train, mine, explain, score), then a re-run: the run finishes
with exactly one result per latent, none lost, and explain/score do not redo finished latents
(counted on the fake LLM server). The pipeline runs in a subprocess on tiny synthetic activations.

Collect needs the real subject model in the child: tests/test_collect_sigkill.py covers it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.builders import make_shards
from tests.conftest import scripted_answer
from tests.fakeserver import FakeLLMServer

pytestmark = pytest.mark.slow  # SIGKILLed children

CHILD = r"""
import json, logging, os, pathlib, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from interp.rescore import run_after_collect
from tests.conftest import tiny_config

home, url = sys.argv[1], sys.argv[2]
hold, marker = os.environ.get("HOLD"), os.environ.get("MARKER")

def park():  # signal the parent that we are mid-stage, then wait to be killed
    pathlib.Path(marker).write_text("parked")
    time.sleep(600)

if hold == "train":  # after the first checkpoint is saved
    import interp.sae.train
    t = sys.modules["interp.sae.train"]  # interp.sae re-exports a function named train
    real_save = t.save_checkpoint
    def save_then_park(*a, **k):
        real_save(*a, **k)
        park()
    t.save_checkpoint = save_then_park
elif hold == "mine":  # after the first encoded batch of the first pass
    import interp.mine.stage as m
    real_iter = m.iter_encoded
    def iter_then_park(*a, **k):
        for i, batch in enumerate(real_iter(*a, **k)):
            yield batch
            park()
    m.iter_encoded = iter_then_park
cfg = tiny_config(home, url, sae={"checkpoint_every": 5})
rec = run_after_collect(cfg, "c0ffee")
print(json.dumps(rec.cached))
"""

N_LATENTS = 16     # tiny_config: 2 x d=8, all explained
SCORE_PER_LATENT = 2  # detection + fuzzing, one batched request each (batch_size 4 = 2 + 2 windows)


class Gate:
    """Scripted answers; once `hold` is set, requests of that stage past `after` block."""

    def __init__(self, hold: str | None = None, after: int = 0):
        self.hold, self.after = hold, after
        self.counts = {"explain": 0, "score": 0}
        self.blocked = 0
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, messages):
        stage = "explain" if "EXPLANATION" in messages[-1]["content"] else "score"
        with self.lock:
            self.counts[stage] += 1
            block = stage == self.hold and self.counts[stage] > self.after
            self.blocked += block
        if block:
            self.release.wait(60)
        return scripted_answer(messages)


def _child(home: Path, url: str, hold: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.getcwd(), MARKER=str(home / "parked"))
    env.pop("HOLD", None)
    if hold in ("train", "mine"):
        env["HOLD"] = hold
    return subprocess.Popen([sys.executable, "-c", CHILD, str(home), url], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(cond, proc, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"child exited before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _done(home: Path, stage: str) -> set[int]:
    """Latents in the part files of the stage's partial directory."""
    return {l for f in (home / "artifacts" / stage).glob("*.partial/part-*.parquet")
            for l in pq.read_table(f, columns=["latent"]).column("latent").to_pylist()}


def _finished(home: Path, stage: str) -> list[Path]:
    return [p.parent for p in (home / "artifacts" / stage).glob("*/manifest.json")]


@pytest.mark.parametrize("stage", ["train", "mine", "explain", "score"])
def test_sigkill_mid_stage_then_rerun(tmp_path, stage):
    make_shards(tmp_path / "artifacts" / "collect" / "c0ffee", n_seq=40, seq_len=17, d=8)
    after = 4 if stage == "explain" else N_LATENTS  # requests answered before the gate blocks
    gate = Gate(stage if stage in ("explain", "score") else None, after)
    with FakeLLMServer(gate) as srv:
        proc = _child(tmp_path, srv.base_url, stage)
        if stage in ("train", "mine"):
            _wait(lambda: (tmp_path / "parked").exists(), proc, f"{stage} to park")
        else:  # some latents are committed to a part file and later requests are in flight
            _wait(lambda: _done(tmp_path, stage) and gate.blocked > 0, proc,
                  f"{stage}: a committed latent and a blocked request")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        done = len(_done(tmp_path, stage)) if stage in ("explain", "score") else 0
        assert _finished(tmp_path, stage) == []  # killed mid-stage: no artifact yet
        blocked = gate.blocked  # requests the killed child never got an answer to
        gate.release.set()
        gate.hold, before = None, dict(gate.counts)

        rerun = _child(tmp_path, srv.base_url)
        out, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err[-3000:]
        new = {s: gate.counts[s] - before[s] for s in gate.counts}
    cached = json.loads(out.strip().splitlines()[-1])
    order = ["train", "mine", "explain", "score"]
    assert [s for s in order if cached[s]] == order[:order.index(stage)]
    for s in order:
        assert len(_finished(tmp_path, s)) == 1, s
    exp = pq.read_table(_finished(tmp_path, "explain")[0] / "explanations.parquet").to_pylist()
    assert sorted(r["latent"] for r in exp) == list(range(N_LATENTS))  # one each, none lost
    scores = pq.read_table(_finished(tmp_path, "score")[0] / "scores.parquet").to_pylist()
    keys = [(r["latent"], r["scorer"]) for r in scores]
    assert len(keys) == len(set(keys)) == SCORE_PER_LATENT * N_LATENTS
    if stage == "train":
        assert "resuming from step 5" in err
    if stage in ("explain", "score"):  # the killed child's answered calls are in the ledger too
        calls = pq.read_table(_finished(tmp_path, stage)[0] / "llm_calls.parquet").to_pylist()
        assert sum(c["status"] == "ok" for c in calls) == gate.counts[stage] - blocked
    if stage == "explain":  # committed latents are not asked again, the others exactly once
        assert new == {"explain": N_LATENTS - done, "score": SCORE_PER_LATENT * N_LATENTS}
    if stage == "score":
        assert new == {"explain": 0, "score": SCORE_PER_LATENT * (N_LATENTS - done)}
