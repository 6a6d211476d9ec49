"""A disk that fills up in the middle of mine, publish or collect: `interp run --no-prefect` and
`interp publish` exit rc 2 with one `error:` line naming the path, nothing half-written is cached
or published, and the next run, with room, finishes.

The full disk is real: the home is moved onto a small tmpfs mounted over it in a private mount
namespace (`unshare -rm`, unprivileged), a filler file leaves a few KiB free, the CLI runs there,
and what it left is copied back over the home for the checks and the next run. Collect needs the
real subject model (slow).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from interp.cli import app
from interp.config import RunConfig, dump_config, load_config
from interp.stages import STAGES, run
from tests.builders import real_model_config, tiny_run_config, tree_hash
from tests.conftest import tiny_config

# In the namespace: the home's content onto a tmpfs mounted over it, all but FREE KiB of it
# filled, the command, then what the home holds copied out (the tmpfs goes with the namespace).
FULL_DISK = r"""
set -e
home=$1 stash=$2 out=$3 free=$4; shift 4
cp -a "$home/." "$stash/"
mount -t tmpfs -o size=16m tmpfs "$home"
cp -a "$stash/." "$home/"
avail=$(df -k --output=avail "$home" | tail -1)
dd if=/dev/zero of="$home/.filler" bs=1k count=$((avail - free)) status=none
set +e
"$@"
rc=$?
rm -f "$home/.filler"
cp -a "$home/." "$out/"
exit $rc
"""


def _namespaces_allowed() -> str | None:
    """Why a tmpfs cannot be mounted in a private namespace here, or None."""
    if shutil.which("unshare") is None:
        return "no unshare(1) on this machine"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs tmpfs '
                            '"$d"; rc=$?; umount "$d" 2>/dev/null; rmdir "$d"; exit $rc'],
                           capture_output=True, text=True)
    if probe.returncode:
        return f"unprivileged mount namespaces are not allowed here: {probe.stderr.strip()}"
    return None


_NO_NAMESPACES = _namespaces_allowed()
needs_namespaces = pytest.mark.skipif(_NO_NAMESPACES is not None, reason=str(_NO_NAMESPACES))


def on_full_disk(home: Path, free_kb: int, argv: list[str], timeout: int = 300
                 ) -> subprocess.CompletedProcess:
    """`interp ARGV` with `free_kb` KiB left on the disk that holds `home`; afterwards `home`
    holds what the command left on that disk."""
    stash, out = home.with_name(home.name + ".stash"), home.with_name(home.name + ".out")
    for d in (stash, out):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        proc = subprocess.run(["unshare", "-rm", "sh", "-c", FULL_DISK, "sh", str(home),
                               str(stash), str(out), str(free_kb), sys.executable, "-m",
                               "interp.cli", *argv], capture_output=True, text=True, env=env,
                              timeout=timeout)
        shutil.rmtree(home)
        out.rename(home)
    finally:
        shutil.rmtree(stash, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    return proc


def _one_error_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


def _tiny_home(tmp: Path, url: str, stages: tuple[str, ...]) -> tuple[RunConfig, Path]:
    """A tiny run's config and its file (collect seeded: no model), `stages` already built."""
    cfg_file = tiny_run_config(tmp, url)
    cfg = load_config(cfg_file, {})
    if stages:
        run(cfg, only=stages)
    shutil.rmtree(tmp / "home" / "runs", ignore_errors=True)
    return cfg, cfg_file


@needs_namespaces
@pytest.mark.slow  # the CLI in a child process, in a mount namespace with a small tmpfs
@pytest.mark.timeout(300)
def test_disk_full_while_mining_then_a_run_with_room_finishes(tmp_path, fake_llm):
    before_mine = tuple(STAGES)[:tuple(STAGES).index("mine")]
    _, cfg_file = _tiny_home(tmp_path, fake_llm.base_url, before_mine)
    home = tmp_path / "home"
    # 16 KiB: a few of the code spill's 48 files (a 4 KiB page each on tmpfs) fit, not all.
    proc = on_full_disk(home, 16, ["run", "-c", str(cfg_file), "--no-prefect"])
    line = _one_error_line(proc, "stage mine", "no space left on device",
                           str(home / "artifacts" / "mine"))
    assert "run again" in line
    mine_dir = home / "artifacts" / "mine"
    assert [p.name for p in mine_dir.iterdir() if not p.name.endswith(".lock")] == []
    assert not (home / "catalog.duckdb").exists()
    assert not list(home.glob("runs/*/.*.tmp"))  # no stray temp file of the run record

    result = CliRunner().invoke(app, ["run", "-c", str(cfg_file), "--no-prefect"])
    assert result.exit_code == 0, result.output
    [mined] = [p.parent for p in mine_dir.glob("*/manifest.json")]
    assert pq.read_metadata(mined / "examples.parquet").num_rows > 0


@needs_namespaces
@pytest.mark.slow  # the CLI in a child process, in a mount namespace with a small tmpfs
@pytest.mark.timeout(300)
def test_disk_full_while_publishing_leaves_the_catalogue_as_it_was(tmp_path, fake_llm):
    _, cfg_file = _tiny_home(tmp_path, fake_llm.base_url, ())
    home = tmp_path / "home"
    first = CliRunner().invoke(app, ["run", "-c", str(cfg_file), "--no-prefect"])
    assert first.exit_code == 0, first.output
    # A second run (another explainer setting) to publish onto the existing catalogue.
    rec = run(load_config(cfg_file, {"explain.max_tokens": 41}))
    catalogue = tree_hash(home / "catalog.duckdb")
    proc = on_full_disk(home, 64, ["publish", "--home", str(home)])
    _one_error_line(proc, "publish", "no space left on device", str(home / "catalog.duckdb"),
                    "unchanged", "interp publish")
    assert tree_hash(home / "catalog.duckdb") == catalogue
    assert sorted(p.name for p in home.iterdir() if p.name.startswith(".")) == []

    again = CliRunner().invoke(app, ["publish", "--home", str(home)])
    assert again.exit_code == 0, again.output
    from storage.read import connect_readonly
    with connect_readonly(home) as con:
        n = con.execute("SELECT count(*) FROM explanations WHERE explain_key = ?",
                        [rec.artifacts["explain"]]).fetchone()[0]
    assert n > 0


@needs_namespaces
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_disk_full_while_collecting_then_a_run_with_room_finishes(tmp_path, model_cache,
                                                                   fake_llm, monkeypatch):
    """The real subject model: 12 sequences of 33 tokens in shards of 4 (d=576 fp16: 152 KiB
    each); 200 KiB free holds the first shard, not the second."""
    home = tmp_path / "home"
    cfg = real_model_config(home, model_cache, fake_llm.base_url, timeout_s=10)
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(dump_config(cfg))
    home.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    proc = on_full_disk(home, 200, ["run", "-c", str(cfg_file), "--no-prefect"], timeout=600)
    _one_error_line(proc, "stage collect", "no space left on device",
                    str(home / "artifacts" / "collect"))
    collect_dir = home / "artifacts" / "collect"
    assert [p.name for p in collect_dir.iterdir() if not p.name.endswith(".lock")] == []

    result = CliRunner().invoke(app, ["run", "-c", str(cfg_file), "--no-prefect"])
    assert result.exit_code == 0, result.output
    [collected] = [p.parent for p in collect_dir.glob("*/manifest.json")]
    assert len(list(collected.glob("shard-*.safetensors"))) == 3


# --- The translation alone, without a namespace: the libraries' own errors, as measured on a
# full tmpfs above (pyarrow and safetensors write to /dev/full without an error).
PYARROW_FULL = (28, "Error writing bytes to file. Detail: [errno 28] No space left on device")
SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"
DUCKDB_FULL = ('FATAL Error: Failed to create checkpoint because of error: Could not write file '
               '"/h/.catalog.duckdb.1.tmp": No space left on device')


def test_a_write_without_room_names_the_stage_and_where_even_when_the_library_does_not(
        tmp_path, collected, monkeypatch):
    """pyarrow's error for a full disk names no file: the runner names the stage and its build
    directory, and says what to do."""
    import interp.mine.stage as mine_stage
    from interp.artifacts import DiskFull
    from tests.builders import mine, train_stage

    cfg = tiny_config(tmp_path, "http://127.0.0.1:9/v1")
    sae = train_stage(cfg, collected)

    def full(table, path):
        raise OSError(*PYARROW_FULL)
    monkeypatch.setattr(mine_stage, "write_parquet_atomic", full)
    with pytest.raises(DiskFull) as err:
        mine(cfg, collected, sae)
    msg = str(err.value)
    assert err.value.errno == 28 and msg.startswith("stage mine: no space left on device writing ")
    assert str(tmp_path / "artifacts" / "mine") in msg and "run again" in msg
    assert [p.name for p in (tmp_path / "artifacts" / "mine").iterdir()
            if not p.name.endswith(".lock")] == []  # the unfinished artifact is gone


def test_safetensors_and_duckdb_say_disk_full_in_words_only():
    """The two libraries raise no OSError for a full disk; their words are recognised."""
    import duckdb
    from safetensors import SafetensorError

    from interp.artifacts import disk_full_errno
    assert disk_full_errno(SafetensorError(SAFETENSORS_FULL)) == 28
    assert disk_full_errno(duckdb.FatalException(DUCKDB_FULL)) == 28
    assert disk_full_errno(OSError(*PYARROW_FULL)) == 28
    assert disk_full_errno(OSError(27, "File too large")) == 27  # RLIMIT_FSIZE
    assert disk_full_errno(ValueError("corpus.n_tokens must be > 0")) is None
    # An LLM server whose own disk is full: its error is about the server, not ours.
    from interp.llm import LLMUnavailable
    assert disk_full_errno(LLMUnavailable("500: No space left on device", 3, "http://s")) is None
    assert disk_full_errno(OSError(13, "Permission denied")) is None


def test_a_failed_run_whose_record_cannot_be_written_reports_its_own_error(tmp_path, collected):
    """The run record is written in a `finally`: on the disk that just filled up it failed too,
    and its error replaced the stage's (`[Errno 28] No space left on device`, no path)."""
    from interp.llm import LLMUnavailable
    from interp.rescore import run_after_collect

    (tmp_path / "runs").write_text("a file where the run records go")  # every save fails
    with pytest.raises(LLMUnavailable, match="127.0.0.1:9"):
        run_after_collect(tiny_config(tmp_path, "http://127.0.0.1:9/v1"), collected.key)
