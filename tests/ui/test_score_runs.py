"""Every reader shows one score run, never the best of several (issue 20, item 1).

One catalogue, made as a user makes it: a run, then `interp rescore --set score.seed=7` through
the CLI, whose judge answers the other way round, so the re-score is lower than the first run
on some (explanation, scorer) pairs and higher on others (a reader taking the max, the min or a
mean over runs is caught). Each reader is checked against the `scores` rows of the run it should
show, read straight from the table: the views, the browser's overview, latent table and latent
page (HTML and JSON), the report, both exports, the notebook, `interp show`, and the documented
query that lines two runs up side by side.
"""
from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interp.cli import app as cli_app
from interp.rescore import run_after_collect
from storage.catalog import publish_run
from tests.builders import make_shards
from tests.conftest import scripted_answer, tiny_config
from tests.fakeserver import FakeLLMServer
from tests.ui.conftest import LOCAL, query

README = Path(__file__).parents[2] / "README.md"


@dataclass(frozen=True)
class Rescored:
    home: Path
    sae: str
    old: str          # the first run's score key
    new: str          # the re-score's
    runs: tuple[str, str]  # run ids, first and re-score

    def headlines(self, score_key: str) -> dict[tuple[int, str], float]:
        """(latent, scorer) -> headline of one score run, from `scores` itself."""
        return {(lat, s): v for lat, s, v in query(
            self.home, "SELECT latent, scorer, value FROM scores WHERE score_key = ? AND "
                       "control IS NULL", [score_key])}

    def by_explanation(self, score_key: str) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for eid, s, v in query(self.home, "SELECT explanation_id, scorer, value FROM scores "
                                          "WHERE score_key = ? AND control IS NULL", [score_key]):
            out.setdefault(eid, {})[s] = v
        return out


def _flipped_judge(state: dict):
    """The tests' scripted judge; once state['flip'] is set, batch answers are inverted."""
    def answer(messages):
        out = scripted_answer(messages)
        if state.get("flip") and isinstance(out, str) and out.startswith("[RESULT]:"):
            n = out.count(",") + 1
            return "[RESULT]: " + ", ".join(str((i + 1) % 2) for i in range(n))
        return out
    return answer


@pytest.fixture(scope="module")
def rescored(tmp_path_factory) -> Rescored:
    home = tmp_path_factory.mktemp("rescored")
    make_shards(home / "artifacts" / "collect" / "c0ffee", n_seq=40, seq_len=17, d=8)
    state: dict = {}
    with FakeLLMServer(_flipped_judge(state)) as srv:
        first = run_after_collect(tiny_config(home, srv.base_url, explain={"n_latents": 10}),
                                  "c0ffee")
        publish_run(home, first.run_id)
        state["flip"] = True
        r = CliRunner().invoke(cli_app, ["rescore", "--home", str(home), "--set", "score.seed=7",
                                         "--no-prefect"])
        assert r.exit_code == 0, r.output
    (old, run_a), (new, run_b) = query(home, "SELECT score_key, run_id FROM runs ORDER BY started_at")
    out = Rescored(home, first.artifacts["train"], old, new, (run_a, run_b))
    a, b = out.headlines(old), out.headlines(new)
    assert old != new and a.keys() == b.keys()
    # The re-score is lower somewhere and higher somewhere: max, min and means over runs all
    # differ from the newest run's own numbers.
    assert any(b[k] < a[k] for k in a) and any(b[k] > a[k] for k in a)
    return out


@pytest.fixture(scope="module")
def client(rescored):
    from starlette.testclient import TestClient

    from interp.ui.app import create_app

    with TestClient(create_app(rescored.home, preload_model=False), base_url=LOCAL) as c:
        yield c


def test_latest_and_explanation_scores_show_the_newest_run(rescored):
    new = rescored.headlines(rescored.new)
    rows = query(rescored.home, "SELECT latent, score_key, detection, fuzzing FROM latest")
    assert rows and {r[1] for r in rows} == {rescored.new}
    for lat, _, detection, fuzzing in rows:
        assert (detection, fuzzing) == (new[(lat, "detection")], new[(lat, "fuzzing")])
    # explanation_scores: one row per explanation and score run, each with its own run's numbers.
    for key in (rescored.old, rescored.new):
        want = rescored.headlines(key)
        got = query(rescored.home, "SELECT latent, detection, fuzzing FROM explanation_scores "
                                   "WHERE score_key = ?", [key])
        assert {(lat, "detection"): d for lat, d, _ in got} | \
            {(lat, "fuzzing"): f for lat, _, f in got} == want
