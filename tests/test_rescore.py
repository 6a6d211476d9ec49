"""Rescore on a previous run's activations: only stages whose inputs changed run (asserted from the
run record and the fake LLM's request count), old and new results sit side by side in the
catalogue, and latents of two SAEs of one hookpoint are matched by decoder cosine."""
from __future__ import annotations

import duckdb
import pytest

from interp.analysis.match import best_matches
from interp.config import ConfigError
from interp.rescore import find_run, rescore_config, run_after_collect
from storage.catalog import load_run, publish
from tests.conftest import tiny_config

STAGES = ("collect", "train", "match", "mine", "explain", "score")


def _ran(rec) -> set[str]:
    return {s for s in STAGES if not rec.cached[s]}


def _publish(home, rec):
    publish(home, rec.artifacts, [load_run(home / "runs" / rec.run_id)])


def test_rescore_recomputes_only_changed_stages(tmp_path, collected, fake_llm):
    home = tmp_path
    base = run_after_collect(tiny_config(home, fake_llm.base_url), collected.key)
    _publish(home, base)
    assert _ran(base) == {"train", "match", "mine", "explain", "score"}

    # A second SAE (new seed): train, mine, explain and score run; collect is reused.
    cfg2, ck = rescore_config(home, find_run(home), {"sae": {"seed": 1}})
    assert ck == collected.key
    n0 = len(fake_llm.requests)
    second = run_after_collect(cfg2, ck)
    assert _ran(second) == {"train", "match", "mine", "explain", "score"}
    assert second.artifacts["train"] != base.artifacts["train"] and len(fake_llm.requests) > n0
    _publish(home, second)

    # Only a scorer setting changes: only score runs, and no explainer request is made.
    cfg3, _ = rescore_config(home, find_run(home), overrides={"score.seed": 7})
    n1 = len(fake_llm.requests)
    third = run_after_collect(cfg3, ck)
    assert _ran(third) == {"score"}
    assert {k: third.artifacts[k] for k in STAGES[:5]} == {k: second.artifacts[k] for k in STAGES[:5]}
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    n_exp2 = con.execute("select count(*) from explanations where sae_key = ?",
                         [second.artifacts["train"]]).fetchone()[0]
    con.close()
    # batch_size 4 over 2 + 2 windows: one request per scorer per explained latent.
    assert len(fake_llm.requests) - n1 == 2 * n_exp2
    _publish(home, third)

    # Nothing changed: every stage is a cache hit and the LLM is not asked anything.
    n2 = len(fake_llm.requests)
    assert _ran(run_after_collect(cfg3, ck)) == set() and len(fake_llm.requests) == n2

    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    saes = [r[0] for r in con.execute("select sae_key from saes order by created_at").fetchall()]
    assert saes == [base.artifacts["train"], second.artifacts["train"]]
    # Both SAEs' explanations, and two score sets (settings hashes) for the second SAE.
    per_sae = dict(con.execute("select sae_key, count(*) from explanations group by 1").fetchall())
    assert set(per_sae) == set(saes)
    sets = con.execute("select count(distinct settings_hash), count(*) from scores where sae_key = ?",
                       [saes[1]]).fetchone()
    assert sets == (2, 2 * 2 * n_exp2)
    # 16 latents each, matched in both directions; cosines agree with the weights.
    assert con.execute("select count(*) from latent_matches").fetchone()[0] == 32
    rows = con.execute("select latent_a, latent_b, cosine from latent_matches where sae_a = ?",
                       [saes[0]]).fetchall()
    from interp.sae import load_sae
    wa = load_sae(home / "artifacts" / "train" / saes[0]).W_dec.detach()
    wb = load_sae(home / "artifacts" / "train" / saes[1]).W_dec.detach()
    idx, cos = best_matches(wa.numpy(), wb.numpy())
    assert sorted(rows) == [(i, int(idx[i]), pytest.approx(float(cos[i]), abs=1e-5)) for i in range(16)]
    both = con.execute("select count(*) from latent_match_compare where text_a is not null "
                       "and text_b is not null").fetchone()[0]
    assert both > 0
    con.close()


def test_rescore_with_external_sae_and_refusals(tmp_path, collected, fake_llm):
    from interp.sae import SAE, save_saelens

    home = tmp_path
    base = run_after_collect(tiny_config(home, fake_llm.base_url), collected.key)
    _publish(home, base)
    ext = tmp_path / "ext_sae"
    save_saelens(SAE(8, 24, 3, cfg={"hookpoint": "blocks.0.hook_resid_post"}), ext)
    cfg, ck = rescore_config(home, find_run(home, base.run_id), sae_path=ext)
    rec = run_after_collect(cfg, ck)
    assert _ran(rec) == {"train", "match", "mine", "explain", "score"}
    _publish(home, rec)
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    assert con.execute("select count(*) from latent_matches").fetchone()[0] == 16 + 24
    con.close()
    with pytest.raises(ConfigError, match="corpus"):
        rescore_config(home, find_run(home), {"corpus": {"seed": 3}})
    with pytest.raises(FileNotFoundError, match="no run"):
        find_run(home, "nope")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """One ephemeral Prefect server for this module's flow tests (temp PREFECT_HOME, offline)."""
    import os

    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect")))
    os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED", "false")
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90), \
            temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


class _InFlight:
    """A scripted answer that records the most requests the server ever held at once."""

    def __init__(self):
        import threading

        from tests.conftest import scripted_answer
        self.now = self.peak = 0
        self.lock = threading.Lock()
        self.answer = scripted_answer

    def __call__(self, messages):
        import time
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(0.02)
        with self.lock:
            self.now -= 1
        return self.answer(messages)


@pytest.mark.slow  # Prefect's test harness (a server), Dask processes
@pytest.mark.parametrize("runner", ["threads", "dask"])
def test_rescore_flow_shards_under_a_shared_llm_limit(tmp_path, collected, prefect_server, runner):
    from flows.label import ScaleOut
    from flows.rescore import rescore
    from tests.fakeserver import FakeLLMServer

    if runner == "dask":
        pytest.importorskip("prefect_dask")
    gauge = _InFlight()
    with FakeLLMServer(gauge) as srv:
        home = tmp_path
        cfg = tiny_config(home, srv.base_url, explain={"n_latents": 4})
        base = run_after_collect(cfg, collected.key)
        _publish(home, base)
        n0, gauge.peak = len(srv.requests), 0  # the base run had no gate
        # Two shards x llm.concurrency 4 could hold 8 requests; the shared limit of 1 must win.
        out = rescore(home=str(home), overrides={"explain.max_tokens": 41, "score.seed": 7,
                                                 "llm.shared_limit": 1},
                      scale=ScaleOut(latent_shards=2, task_runner=runner))
        n_requests = len(srv.requests) - n0
    assert {s for s, c in out["cached"].items() if not c} == {"explain", "score"}
    assert gauge.peak == 1
    assert "score/" + out["artifacts"]["score"] in out["published"]
    # One row per latent x scorer, each latent asked once: shards neither overlap nor miss.
    import pyarrow.parquet as pq

    from interp.artifacts import ArtifactStore
    rows = pq.read_table(ArtifactStore(home).require("score", out["artifacts"]["score"]).path
                         / "scores.parquet").to_pylist()
    assert len({(r["latent"], r["scorer"]) for r in rows}) == len(rows) == 2 * 4
    assert n_requests == 4 + 2 * 4  # one explanation and two batched scorer requests per latent


def test_interp_rescore_cli(tmp_path, collected, fake_llm):
    from typer.testing import CliRunner

    from interp.cli import app

    base = run_after_collect(tiny_config(tmp_path, fake_llm.base_url), collected.key)
    _publish(tmp_path, base)
    cli = CliRunner()
    r = cli.invoke(app, ["rescore", "--home", str(tmp_path), "--set", "score.seed=7", "--no-prefect"])
    assert r.exit_code == 0, r.output
    lines = {ln.split()[0]: ln for ln in r.output.splitlines() if ln.startswith("  ")}
    assert all("(cached)" in lines[s] for s in STAGES[:5]) and "(cached)" not in lines["score"]
    r = cli.invoke(app, ["rescore", "--home", str(tmp_path), "--set", "corpus.seed=3", "--no-prefect"])
    assert r.exit_code == 2 and "'corpus' section changed" in r.output


def test_the_newest_run_is_the_one_started_last_even_within_one_second(tmp_path):
    """Run ids start with the second they began, then a random suffix: two runs in one second
    must still be told apart by their start time, not by the suffix."""
    import json

    for run_id, started in (("20261130T010203-ffffff", 100.0), ("20261130T010203-000000", 100.5)):
        (tmp_path / "runs" / run_id).mkdir(parents=True)
        (tmp_path / "runs" / run_id / "run.json").write_text(json.dumps(
            {"run_id": run_id, "status": "complete", "started_at": started}))
    assert find_run(tmp_path).name == "20261130T010203-000000"


def test_a_run_saved_before_max_doc_tokens_is_rescored_as_whole_documents(tmp_path, collected):
    """A resolved config.yaml without corpus.max_doc_tokens was collected from whole documents:
    rescore's config says so (not the new default prefix), and asking for a prefix is refused."""
    import json

    import yaml

    from interp.config import dump_config

    tree = yaml.safe_load(dump_config(tiny_config(tmp_path, "http://127.0.0.1:9/v1")))
    del tree["corpus"]["max_doc_tokens"]
    run_dir = tmp_path / "runs" / "old"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(tree))
    (run_dir / "run.json").write_text(json.dumps({"artifacts": {"collect": collected.key}}))
    cfg, ck = rescore_config(tmp_path, run_dir, {"sae": {"seed": 1}})
    assert ck == collected.key and cfg.corpus.max_doc_tokens is None
    with pytest.raises(ConfigError, match="corpus"):
        rescore_config(tmp_path, run_dir, {"corpus": {"max_doc_tokens": 512}})
