"""prefect.yaml validated without a server: keys against an allow-list, entrypoints load,
parameters validate against each flow (and RunConfig), schedules parse; and each kind of mistake
is caught with a message naming it."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from flows.deploy_check import ROOT, validate

YAML = ROOT / "prefect.yaml"


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(YAML.read_text())


def test_prefect_yaml_is_valid(spec):
    assert validate(YAML) == []
    names = {d["name"]: d for d in spec["deployments"]}
    assert set(names) == {"nightly", "rescore"}
    assert names["nightly"]["schedules"][0]["cron"] and names["nightly"]["entrypoint"].endswith(":label")
    assert {d["work_pool"]["name"] for d in spec["deployments"]} == {"interp-process"}


def _mutated(tmp_path: Path, spec: dict, change) -> list[str]:
    bad = copy.deepcopy(spec)
    change(bad)
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(bad))
    return validate(path)


MISTAKES = {
    "unknown top-level key": (lambda s: s.update(deployment=[]), "unknown key 'deployment'"),
    "misspelt schedules": (lambda s: s["deployments"][0].update(schedule_s=[{"cron": "0 2 * * *"}]),
                           "unknown key 'schedule_s'"),
    "unknown work_pool key": (lambda s: s["deployments"][0]["work_pool"].update(nmae="x"),
                              "unknown key 'nmae'"),
    "unknown schedule key": (lambda s: s["deployments"][0]["schedules"][0].update(crn="x"), "crn"),
    "bad cron": (lambda s: s["deployments"][0]["schedules"][0].update(cron="61 2 * * *"),
                 "schedules[0]"),
    "bad timezone": (lambda s: s["deployments"][0]["schedules"][0].update(timezone="Mars/Base"),
                     "schedules[0]"),
    "unknown flow parameter": (lambda s: s["deployments"][1]["parameters"].update(sae="x"),
                               "parameter 'sae' is not an argument"),
    "bad RunConfig field": (lambda s: s["deployments"][0]["parameters"]["config"]["sae"].update(kk=3),
                            "not a valid RunConfig"),
    "bad scale value": (lambda s: s["deployments"][1]["parameters"]["scale"].update(task_runner="ray"),
                        "do not validate"),
    "missing entrypoint": (lambda s: s["deployments"][1].update(entrypoint="flows/nope.py:rescore"),
                           "does not load"),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_each_mistake_is_reported(tmp_path, spec, name):
    change, expected = MISTAKES[name]
    errors = _mutated(tmp_path, spec, change)
    assert errors and any(expected in e for e in errors), errors
