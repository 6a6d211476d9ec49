"""The deployments of prefect.yaml served for real on 127.0.0.1: `prefect server start`, a process
work pool, `prefect deploy --all`, `prefect worker start`, then one `rescore` run of a tiny
synthetic base run (the LLM is the fake server in this process). Server and worker run as
subprocesses with a temporary PREFECT_HOME and are always killed."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from interp.rescore import run_after_collect
from storage.catalog import load_run, publish
from tests.builders import make_shards
from tests.conftest import scripted_answer, tiny_config
from tests.fakeserver import FakeLLMServer

pytestmark = pytest.mark.slow  # a Prefect server and worker

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(prefect_home: Path, api: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_API_URL=api, DO_NOT_TRACK="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false",
               PREFECT_WORKER_QUERY_SECONDS="1", PYTHONPATH=str(ROOT))
    return env


def _start(args: list[str], env, log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """Kill the process group this test started (server or worker and their children)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait_for(cond, what: str, timeout: float, logs: list[Path]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_rescore_deployment_runs_on_a_local_server_and_worker(tmp_path):
    home = tmp_path / "home"
    make_shards(home / "artifacts" / "collect" / "c0ffee", n_seq=40, seq_len=17, d=8)
    api = f"http://127.0.0.1:{_free_port()}/api"
    env = _env(tmp_path / "prefect", api)
    logs = [tmp_path / "server.log", tmp_path / "worker.log"]
    procs: list[subprocess.Popen] = []
    with FakeLLMServer(scripted_answer) as llm:
        base = run_after_collect(tiny_config(home, llm.base_url), "c0ffee")
        publish(home, base.artifacts, [load_run(home / "runs" / base.run_id)])
        try:
            port = api.split(":")[2].split("/")[0]
            procs.append(_start([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port],
                                env, logs[0]))
            _wait_for(lambda: _healthy(api), "the Prefect server", 180, logs)
            for cmd in (["work-pool", "create", "interp-process", "--type", "process"],
                        ["--no-prompt", "deploy", "--all"]):
                r = subprocess.run([PREFECT, *cmd], env=env, cwd=ROOT, capture_output=True,
                                   text=True, timeout=300)
                assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
            procs.append(_start([PREFECT, "worker", "start", "--pool", "interp-process"], env, logs[1]))
            dep = httpx.get(f"{api}/deployments/name/rescore/rescore", timeout=10).json()
            nightly = httpx.get(f"{api}/deployments/name/label/nightly", timeout=10).json()
            assert nightly["schedules"] and nightly["schedules"][0]["schedule"]["cron"] == "0 2 * * *"
            run = httpx.post(f"{api}/deployments/{dep['id']}/create_flow_run", timeout=10, json={
                "parameters": {"home": str(home), "overrides": {"score.seed": 7}}}).json()

            def final_state():
                st = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=10).json()["state"]
                return st if st["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None
            state = _wait_for(final_state, "the rescore flow run", 300, logs)
            assert state["type"] == "COMPLETED", (state, logs[1].read_text()[-3000:])
        finally:
            for p in reversed(procs):
                _stop(p)
    runs = sorted((home / "runs").glob("*/run.json"))
    assert len(runs) == 2
    record = json.loads(runs[-1].read_text()) if runs[-1].parent.name != base.run_id else \
        json.loads(runs[0].read_text())
    assert {s for s, c in record["cached"].items() if not c} == {"score"}
    assert record["artifacts"]["explain"] == base.artifacts["explain"]
