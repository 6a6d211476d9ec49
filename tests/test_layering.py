"""The library never imports Prefect: flows/ is the only Prefect-aware layer."""
from __future__ import annotations

import pkgutil
import subprocess
import sys

import interp


def test_interp_modules_do_not_import_prefect():
    names = [m.name for m in pkgutil.walk_packages(interp.__path__, "interp.")
             if m.name not in ("interp.cli",) and not m.name.startswith("interp.llm.vllm")]
    code = ("import importlib, sys\n"
            f"for n in {names!r}: importlib.import_module(n)\n"
            "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
            "print(len(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0"
    assert len(names) > 20
