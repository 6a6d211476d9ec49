"""`interp export`: Neuronpedia files validate against the schema transcribed from Neuronpedia's
repository (tests/data/neuronpedia_schema.json) and carry what the catalogue holds; the SAEBench
JSON's score is the mean detection accuracy that SQL computes."""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from interp.cli import app
from storage.export import export
from tests.ui.conftest import query

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "neuronpedia_schema.json").read_text())


def _lines(files: list[Path]) -> list[dict]:
    return [json.loads(line) for f in files for line in gzip.decompress(f.read_bytes()).decode().splitlines()]


@pytest.fixture(scope="module")
def exported(ui_home, tmp_path_factory):
    out = tmp_path_factory.mktemp("np")
    sae = query(ui_home, "SELECT sae_key FROM saes")[0][0]
    files = export(ui_home, sae[:6], "neuronpedia", out)
    by_kind = {k: _lines([f for f in files if f.parent.name == k])
               for k in ("features", "activations", "explanations")}
    return sae, by_kind


def test_neuronpedia_files_validate_against_the_schema(exported):
    _, by_kind = exported
    for kind, rows in by_kind.items():
        validator = jsonschema.Draft202012Validator({**SCHEMA["$defs"][kind], "$defs": SCHEMA["$defs"]})
        assert rows, kind
        for row in rows:
            validator.validate(row)
    with pytest.raises(jsonschema.ValidationError):  # the schema does reject a wrong row
        jsonschema.validate({**by_kind["features"][0], "index": 3}, SCHEMA["$defs"]["features"])


def test_neuronpedia_rows_match_the_catalogue(exported, ui_home):
    sae, by_kind = exported
    feats = {int(r["index"]): r for r in by_kind["features"]}
    assert len(feats) == query(ui_home, "SELECT count(DISTINCT latent) FROM latents")[0][0]
    promoted = query(ui_home, "SELECT latent, list(token ORDER BY rank) FROM latent_logits "
                              "WHERE direction = 'promoted' GROUP BY latent")
    assert promoted and all(feats[lat]["pos_str"] == toks for lat, toks in promoted)
    ok = query(ui_home, "SELECT latent, text FROM explanations WHERE status = 'ok' "
                        "QUALIFY row_number() OVER (PARTITION BY latent ORDER BY created_at DESC) = 1")
    assert sorted((int(r["index"]), r["description"]) for r in by_kind["explanations"]) == sorted(ok)
    n_act = query(ui_home, "SELECT count(*) FROM examples WHERE kind IN ('top', 'quantile') "
                           "AND max_act > 0")[0][0]
    assert len(by_kind["activations"]) == n_act
    a = by_kind["activations"][0]
    assert a["values"][a["maxValueTokenIndex"]] == a["maxValue"] and len(a["tokens"]) == len(a["values"])
    assert {r["layer"] for rows in by_kind.values() for r in rows} == {feats[0]["layer"]}


def test_saebench_json_and_the_cli(ui_home, tmp_path):
    res = CliRunner().invoke(app, ["export", query(ui_home, "SELECT sae_key FROM saes")[0][0][:6],
                                   "--format", "saebench", "--out", str(tmp_path),
                                   "--home", str(ui_home)])
    assert res.exit_code == 0, res.output
    data = json.loads(next(tmp_path.glob("*_autointerp_eval_results.json")).read_text())
    accs = [r[0] for r in query(ui_home, """
        SELECT s.accuracy FROM explanations x JOIN scores s USING (explanation_id)
        WHERE x.status = 'ok' AND s.scorer = 'detection'
        QUALIFY row_number() OVER (PARTITION BY x.latent ORDER BY x.created_at DESC) = 1""")
            if r[0] is not None and math.isfinite(r[0])]
    got = data["eval_result_metrics"]["autointerp"]
    assert data["eval_type_id"] == "autointerp" and accs
    assert got["autointerp_score"] == pytest.approx(sum(accs) / len(accs))
    assert set(data) >= {"eval_config", "eval_id", "datetime_epoch_millis", "eval_result_details",
                         "sae_bench_commit_hash", "sae_lens_id", "sae_cfg_dict"}
    bad = CliRunner().invoke(app, ["export", "zz", "--format", "csv", "--home", str(ui_home)])
    assert bad.exit_code != 0


def test_saebench_json_takes_the_saebench_scorer_when_there_is_one(home_copy, tmp_path):
    import duckdb

    from storage.export import saebench_result

    con = duckdb.connect(str(home_copy / "catalog.duckdb"))   # fuzzing rows stand in for saebench
    con.execute("UPDATE scores SET scorer = 'saebench' WHERE scorer = 'fuzzing'")
    accs = [r[0] for r in con.execute("""
        SELECT s.accuracy FROM explanations x JOIN scores s USING (explanation_id)
        WHERE x.status = 'ok' AND s.scorer = 'saebench' AND s.control IS NULL
        QUALIFY row_number() OVER (PARTITION BY x.latent ORDER BY x.created_at DESC) = 1""").fetchall()
        if r[0] is not None and math.isfinite(r[0])]
    key = con.execute("SELECT sae_key FROM saes").fetchone()[0]
    con.close()
    data = saebench_result(home_copy, key)
    assert data["eval_config"]["scorer"] == "saebench" and accs
    assert data["eval_result_metrics"]["autointerp"]["autointerp_score"] == pytest.approx(
        sum(accs) / len(accs))
