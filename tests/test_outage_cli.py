"""An LLM outage in the middle of a run, through the real CLI (`interp run --no-prefect`, where
the exit code matters): the server process SIGKILLed while score has requests in flight, and the
API key revoked (401) after some latents were answered. Either way: rc 2 and one `error:` line
naming the server, the answered latents kept, nothing cached or published as done, and the next
run asks the server only for the latents still missing (counted on the server).
(tests/test_outage.py covers a server that starts answering 500 and a 401 at the start of score.)
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from interp.cli import app
from tests.builders import tiny_run_config
from tests.conftest import scripted_answer
from tests.fakeserver import FakeLLMServer

N_LATENTS = 16        # tiny_config: 2 x d=8, all explained
SCORE_PER_LATENT = 2  # detection + fuzzing, one batched request each
ANSWERED = 12         # score requests answered before the outage (4 latents' worth, or more)

# The LLM server as a process of its own, which SIGKILLs itself on the score request after
# ANSWERED, while other requests are in flight.
KILLED_SERVER = r"""
import os, signal, sys, threading
from tests.conftest import scripted_answer
from tests.fakeserver import FakeLLMServer

port, answered = int(sys.argv[1]), int(sys.argv[2])
lock, n = threading.Lock(), [0]

def answer(messages):
    if "EXPLANATION" not in messages[-1]["content"]:  # a scorer's request
        with lock:
            n[0] += 1
            if n[0] > answered:
                os.kill(os.getpid(), signal.SIGKILL)
    return scripted_answer(messages)

with FakeLLMServer(answer, port=port) as srv:
    print(srv.base_url, flush=True)
    threading.Event().wait()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _score_parts(home: Path) -> set[int]:
    return {l for f in (home / "artifacts" / "score").glob("*.partial/part-*.parquet")
            for l in pq.read_table(f, columns=["latent"]).column("latent").to_pylist()}


def _failed_mid_score(result, home: Path, server: str, *words: str) -> set[int]:
    """The checks every outage shares; returns the latents that score kept."""
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert result.exit_code == 2 and len(errors) == 1, result.output[-3000:]
    for w in (server, *words):
        assert w in errors[0], errors[0]
    assert "Traceback" not in result.output
    kept = _score_parts(home)
    assert 0 < len(kept) < N_LATENTS, kept  # answered latents kept, the rest not
    assert not list((home / "artifacts" / "score").glob("*/manifest.json"))  # not cached as done
    assert len(list((home / "artifacts" / "explain").glob("*/manifest.json"))) == 1
    assert not (home / "catalog.duckdb").exists()  # nothing published
    [record] = [json.loads(p.read_text()) for p in home.glob("runs/*/run.json")]
    assert record["status"] == "failed" and server in record["error"]
    return kept


@pytest.mark.slow  # the CLI and a server in child processes, the server SIGKILLed
@pytest.mark.timeout(180)
def test_llm_server_killed_mid_score_then_the_next_run_asks_only_for_the_rest(tmp_path):
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    server = subprocess.Popen([sys.executable, "-c", KILLED_SERVER, str(port), str(ANSWERED)],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        url = server.stdout.readline().strip()
        cfg_file = tiny_run_config(tmp_path, url)
        result = CliRunner().invoke(app, ["run", "-c", str(cfg_file), "--no-prefect"])
        assert server.wait(30) == -signal.SIGKILL  # it really died mid-score
    finally:
        server.kill()
        server.wait()
    kept = _failed_mid_score(result, tmp_path / "home", url)

    with FakeLLMServer(scripted_answer, port=port) as srv:  # back, at the same address
        again = CliRunner().invoke(app, ["run", "-c", str(cfg_file), "--no-prefect"])
    assert again.exit_code == 0, again.output[-3000:]
    assert len(srv.requests) == SCORE_PER_LATENT * (N_LATENTS - len(kept))  # and no explain


@pytest.mark.slow  # the CLI and a server in child processes
@pytest.mark.timeout(180)
def test_key_revoked_mid_run_then_the_next_run_asks_only_for_the_rest(tmp_path):
    # Every explain request, then ANSWERED score requests, then 401 for everything.
    script = ["ok"] * (N_LATENTS + ANSWERED) + ["401"] * 1000
    with FakeLLMServer(scripted_answer, script=script) as srv:
        cfg_file = tiny_run_config(tmp_path, srv.base_url)
        result = CliRunner().invoke(app, ["run", "-c", str(cfg_file), "--no-prefect"])
        kept = _failed_mid_score(result, tmp_path / "home", srv.base_url, "401",
                                 "llm.api_key_env")
        # A refused key stops the stage at once: the requests in flight then, no more.
        assert srv.requests.count("401") <= 2 * 4
        srv.script.clear()  # a valid key again
        before = len(srv.requests)
        again = CliRunner().invoke(app, ["run", "-c", str(cfg_file), "--no-prefect"])
        assert again.exit_code == 0, again.output[-3000:]
        assert len(srv.requests) - before == SCORE_PER_LATENT * (N_LATENTS - len(kept))
