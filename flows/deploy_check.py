"""Offline validation of prefect.yaml (`prefect deploy` has no dry run and ignores unknown keys).

Checks every deployment: keys against an allow-list (the fields of Prefect's own prefect.yaml
models, so a typo such as `schedule_s` fails instead of silently dropping a schedule), the
entrypoint loads, the parameters validate against the flow's signature (and `config` against
RunConfig), and each schedule parses. Usage: `python -m flows.deploy_check [prefect.yaml]`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]


def _allowed(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()} | set(model.model_fields)


def _unknown(where: str, data: Any, model: type[BaseModel]) -> list[str]:
    if not isinstance(data, dict):
        return [f"{where}: expected a mapping, got {type(data).__name__}"]
    extra = sorted(set(data) - _allowed(model))
    return [f"{where}: unknown key {k!r} (allowed: {', '.join(sorted(_allowed(model)))})" for k in extra]


def _check_schedule(where: str, item: Any) -> list[str]:
    from prefect.cli.deploy._models import RawScheduleConfig
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

    try:
        raw = RawScheduleConfig.model_validate(item)  # extra="forbid": unknown keys fail here
        tz = {"timezone": raw.timezone} if raw.timezone else {}
        if raw.cron is not None:
            CronSchedule(cron=raw.cron, day_or=raw.day_or if isinstance(raw.day_or, bool) else True, **tz)
        elif raw.interval is not None:
            IntervalSchedule(interval=raw.interval, **tz)
        else:
            RRuleSchedule(rrule=raw.rrule, **tz)
    except Exception as err:  # noqa: BLE001 - reported with the schedule's position
        return [f"{where}: {err}"]
    return []


def _check_parameters(where: str, entrypoint: str, params: dict[str, Any]) -> list[str]:
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    try:
        flow = load_flow_from_entrypoint(str(ROOT / entrypoint) if ":" in entrypoint else entrypoint)
    except Exception as err:  # noqa: BLE001
        return [f"{where}: entrypoint {entrypoint!r} does not load: {err}"]
    known = set(parameter_schema(flow).properties)
    errors = [f"{where}: parameter {p!r} is not an argument of flow {flow.name!r} "
              f"(arguments: {', '.join(sorted(known))})" for p in sorted(set(params) - known)]
    try:
        flow.validate_parameters(params)
    except Exception as err:  # noqa: BLE001
        errors.append(f"{where}: parameters do not validate: {err}")
    if "config" in params:
        from interp.config import RunConfig
        try:
            RunConfig.model_validate(params["config"] or {})
        except Exception as err:  # noqa: BLE001
            errors.append(f"{where}: parameters.config is not a valid RunConfig: {err}")
    return errors


def validate(path: Path) -> list[str]:
    """Every problem found in a prefect.yaml, as messages naming the deployment and key."""
    from prefect.cli.deploy._models import DeploymentConfig, PrefectYamlModel, WorkPoolConfig

    data = yaml.safe_load(Path(path).read_text()) or {}
    errors = _unknown(str(path), data, PrefectYamlModel)
    for i, dep in enumerate(data.get("deployments") or []):
        where = f"deployments[{i}] ({dep.get('name', '?') if isinstance(dep, dict) else '?'})"
        errors += _unknown(where, dep, DeploymentConfig)
        if not isinstance(dep, dict):
            continue
        if not dep.get("entrypoint"):
            errors.append(f"{where}: no entrypoint")
        else:
            errors += _check_parameters(where, dep["entrypoint"], dep.get("parameters") or {})
        if dep.get("work_pool") is not None:
            errors += _unknown(f"{where}.work_pool", dep["work_pool"], WorkPoolConfig)
        for j, item in enumerate(dep.get("schedules") or ([dep["schedule"]] if dep.get("schedule") else [])):
            errors += _check_schedule(f"{where}.schedules[{j}]", item)
    if not errors:
        PrefectYamlModel.model_validate(data)  # Prefect's own (lenient) parse must succeed too
    return errors


if __name__ == "__main__":
    problems = validate(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "prefect.yaml"))
    for p in problems:
        sys.stderr.write(p + "\n")
    sys.exit(1 if problems else 0)
