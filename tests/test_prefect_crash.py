"""kill -9 of a Prefect-mode run during explain, then during score: the next Prefect run completes
by itself (the killed run's shared LLM slots are freed by the kernel at once), with exactly one row
per latent (and per latent x scorer), and the killed run's ephemeral Prefect server dies with it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from interp.rescore import run_after_collect
from storage.catalog import publish_run
from tests.conftest import tiny_config
from tests.fakeserver import FakeLLMServer
from tests.test_resume_sigkill import N_LATENTS, SCORE_PER_LATENT, Gate, _done, _finished, _wait

pytestmark = pytest.mark.slow  # Prefect's ephemeral server, SIGKILLed children

CHILD = r"""
import json, sys
from pathlib import Path
from interp.cli import _start_prefect
home = Path(sys.argv[1])
_start_prefect(home)
from flows.rescore import rescore
out = rescore(home=str(home), overrides={"explain.max_tokens": 41, "llm.shared_limit": 2})
print(json.dumps(out["cached"]))
"""


def _prefect_servers(prefect_home: Path) -> list[int]:
    """Pids of ephemeral Prefect API servers started for `prefect_home`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"prefect.server.api.server:create_app" in cmd and \
                f"PREFECT_HOME={prefect_home}".encode() in env.split(b"\0"):
            pids.append(int(proc.name))
    return pids


def _child(home: Path, prefect_home: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=os.getcwd(), PREFECT_HOME=str(prefect_home), DO_NOT_TRACK="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
               PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED="false")
    return subprocess.Popen([sys.executable, "-c", CHILD, str(home)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    """One Prefect home for both kills: its database is migrated once (~15 s on 2 cores)."""
    return tmp_path_factory.mktemp("prefect")


@pytest.mark.parametrize("stage", ["explain", "score"])
def test_kill9_in_prefect_mode_then_rerun(tmp_path, collected, prefect_home, stage):
    home = tmp_path
    gate = Gate(stage, after=4 if stage == "explain" else N_LATENTS)
    with FakeLLMServer(gate) as srv:
        gate.hold = None
        base = run_after_collect(tiny_config(home, srv.base_url), collected.key)
        publish_run(home, base.run_id)
        gate.hold, gate.counts = stage, {"explain": 0, "score": 0}
        proc = _child(home, prefect_home)
        _wait(lambda: _done(home, stage) and gate.blocked > 0, proc,
              f"{stage}: a committed latent and a blocked request", timeout=240)
        servers = _prefect_servers(prefect_home)
        assert servers, "the run's ephemeral Prefect server was not found"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        deadline = time.monotonic() + 10
        while _prefect_servers(prefect_home) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _prefect_servers(prefect_home) == []  # the server died with its run
        gate.release.set()
        gate.hold = None
        t0 = time.monotonic()
        rerun = _child(home, prefect_home)  # no manual step: slots of the killed run are free
        out, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err[-3000:]
        assert time.monotonic() - t0 < 240
    cached = json.loads(out.strip().splitlines()[-1])
    assert not cached["explain" if stage == "explain" else "score"]
    exp = [d for d in _finished(home, "explain") if d.name != base.artifacts["explain"]]
    rows = pq.read_table(exp[0] / "explanations.parquet").to_pylist()
    assert sorted(r["latent"] for r in rows) == list(range(N_LATENTS))
    sc = [d for d in _finished(home, "score") if d.name != base.artifacts["score"]]
    keys = [(r["latent"], r["scorer"]) for r in pq.read_table(sc[0] / "scores.parquet").to_pylist()]
    assert len(keys) == len(set(keys)) == SCORE_PER_LATENT * N_LATENTS
