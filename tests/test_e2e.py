"""One real end-to-end run through the CLI: the embedded SmolLM2 subject model, the embedded
llama.cpp server, a real Prefect flow run and a real DuckDB catalogue; then a cached re-run, a
scorer-only change, `interp query` and `interp show`."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
INTERP = [sys.executable, "-m", "interp.cli"]


def _config(home: Path, models: Path, score_seed: int = 0) -> dict:
    return {
        "home": str(home),
        "model": {"cache_dir": str(models)},
        "corpus": {"n_tokens": 2048},
        "sae": {"expansion_factor": 1, "k": 8, "batch_size": 256, "epochs": 2, "eval_sequences": 4},
        "mine": {"n_top": 6, "n_quantiles": 2, "per_quantile": 2, "n_random": 4},
        "llm": {"concurrency": 2, "n_ctx": 4096},
        "explain": {"n_latents": 3, "n_examples": 3, "min_examples": 2, "min_heldout": 2,
                    "max_tokens": 24},
        "score": {"n_positive": 2, "n_negative": 2, "seed": score_seed, "controls": [],
                  "probes": ["the"]},
    }


def _interp(args: list[str], env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(INTERP + args, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    prefect_home = tmp_path_factory.mktemp("prefect")
    e = dict(os.environ, PREFECT_HOME=str(prefect_home), DO_NOT_TRACK="1",
             PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false",
             PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
             PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED="false", HF_HUB_OFFLINE="1")
    e.pop("PREFECT_API_URL", None)
    return e


def _stages(stdout: str) -> dict[str, bool]:
    """{stage: cached} from the run summary."""
    return {m.group(1): bool(m.group(2)) for m in
            re.finditer(r"^\s+(collect|train|mine|explain|score)\s+\w+\s+[\d.]+s( \(cached\))?$",
                        stdout, re.MULTILINE)}


def test_cli_end_to_end(tmp_path, env, model_cache):
    home, models = tmp_path / "home", model_cache
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump(_config(home, models)))

    first = _interp(["run", "--config", str(cfg_file)], env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert _stages(first.stdout) == dict.fromkeys(("collect", "train", "mine", "explain", "score"), False)
    assert (home / "catalog.duckdb").is_file()
    saved = list((home / "runs").glob("*/config.yaml"))
    assert len(saved) == 1 and yaml.safe_load(saved[0].read_text())["corpus"]["n_tokens"] == 2048

    q = _interp(["query", "select count(*) as n from explanations", "--format", "csv"],
                env | {"INTERP_HOME": str(home)})
    assert q.returncode == 0, q.stderr
    assert q.stdout.splitlines()[1] == "3"
    ok = _interp(["query", "select sae_key, latent from explanations where status = 'ok' order by latent",
                  "--home", str(home), "--format", "csv"], env)
    scored = _interp(["query", "select count(*) from scores where control is null",
                      "--home", str(home), "--format", "csv"], env)
    n_ok = len(ok.stdout.splitlines()) - 1
    assert int(scored.stdout.splitlines()[1]) == 2 * n_ok

    again = _interp(["run", "--config", str(cfg_file)], env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(_stages(again.stdout).values()) and len(_stages(again.stdout)) == 5

    cfg_file.write_text(yaml.safe_dump(_config(home, models, score_seed=1)))
    rescored = _interp(["run", "--config", str(cfg_file)], env)
    assert rescored.returncode == 0, rescored.stderr[-3000:]
    st = _stages(rescored.stdout)
    assert st == {"collect": True, "train": True, "mine": True, "explain": True, "score": False}
    runs = _interp(["query", "select count(*) from runs", "--home", str(home), "--format", "csv"], env)
    assert runs.stdout.splitlines()[1] == "3"
    explanations = _interp(["query", "select count(*) from explanations", "--home", str(home),
                            "--format", "csv"], env)
    assert explanations.stdout.splitlines()[1] == "3"  # re-runs added no duplicates

    metrics = _interp(["query", "select fvu, l0, dead_frac, ce_loss_recovered from saes", "--home",
                       str(home), "--format", "csv"], env).stdout.splitlines()[1].split(",")
    assert all(v != "" for v in metrics), metrics  # FVU, L0, dead %, CE loss recovered all present
    sae_key = _interp(["query", "select sae_key from saes", "--home", str(home), "--format", "csv"],
                      env).stdout.splitlines()[1]
    latent = _interp(["query", "select latent from explanations limit 1", "--home", str(home),
                      "--format", "csv"], env).stdout.splitlines()[1]
    show = _interp(["show", sae_key[:8], latent, "--home", str(home)], env)
    assert show.returncode == 0, show.stderr
    assert "top examples:" in show.stdout and "<<" in show.stdout and "FVU=" in show.stdout

    refused = _interp(["query", "delete from explanations", "--home", str(home)], env)
    assert refused.returncode == 2 and "only runs SELECT" in refused.stderr
