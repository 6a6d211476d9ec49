"""Layering: the library never imports Prefect (flows/ is the only Prefect-aware layer), imports
between interp, storage and flows point one way only, and modules and functions stay within
STYLE.md's sizes (all checked on the source with ast)."""
from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

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


# --- Allowed import directions, read from the source (every import, lazy ones included) --------
# Layers, inner to outer: the library (interp without its front ends) <- storage <- flows, and the
# front ends (interp.cli and its command modules, interp.ui, interp.report) over all of them. An
# import may only point inwards; the CLI alone also starts Prefect flows.
ROOT = Path(__file__).resolve().parents[1]
FRONT_ENDS = ("interp.cli", "interp.cli_common", "interp.cli_catalogue", "interp.ui", "interp.report",
              "interp.notebook")
ALLOWED = {
    "library": {"library"},
    "storage": {"library", "storage"},
    "flows": {"library", "storage", "flows", "prefect"},
    "front end": {"library", "storage", "front end"},
    "cli": {"library", "storage", "front end", "flows"},
}

# The one exception, explicitly: the package's `interp.open(home)` imports the notebook front end
# lazily (inside the function), so `import interp` stays light and loads no storage code. It is an
# entry point re-exported for notebooks, not a dependency of the library on the front end.
EXCEPTIONS = {("interp", "interp.notebook"), ("interp", "interp.notebook.Catalogue")}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _layer(module: str) -> str | None:
    if module == "interp.cli":
        return "cli"
    if any(_within(module, f) for f in FRONT_ENDS):
        return "front end"
    for top in ("interp", "storage", "flows", "prefect"):
        if _within(module, top):
            return "library" if top == "interp" else top
    return None  # third-party or stdlib: not our concern here


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("interp", "storage", "flows"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return found


def test_imports_point_only_inwards():
    mods = _modules()
    assert len(mods) > 40 and "storage.catalog" in mods and "flows.label" in mods
    bad = []
    for module, path in mods.items():
        src = _layer(module)
        for name in sorted(_imports(module, path)):
            if (module, name) in EXCEPTIONS:
                continue
            dst = _layer(name)
            if dst is not None and dst not in ALLOWED[src]:
                bad.append(f"{module} ({src}) imports {name} ({dst})")
    assert not bad, "\n".join(bad)


def test_storage_never_imports_front_ends_rescore_or_flows():
    forbidden = ("interp.ui", "interp.rescore", "interp.cli", "interp.report", "flows", "prefect")
    bad = [f"{m} imports {n}" for m, p in _modules().items() if _within(m, "storage")
           for n in _imports(m, p) if any(_within(n, f) for f in forbidden)]
    assert not bad, bad


def test_no_import_cycles_between_layers():
    mods = _modules()
    edges = {(_layer(m), _layer(n)) for m, p in mods.items() for n in _imports(m, p)
             if _layer(n) not in (None, _layer(m)) and (m, n) not in EXCEPTIONS}
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: frozenset = frozenset()) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n}))
                   for n in graph.get(start, ()))
    assert not [a for a in graph if reaches(a, a)], graph


# --- Sizes (STYLE.md): modules of 400 lines at most, functions of ~60 -----------------------------
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # from `def` to the last line, nested functions included, decorators not


def test_modules_stay_within_400_lines():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these along a real seam (STYLE.md: 400 lines at most): {long}"


def test_functions_stay_within_60_lines():
    long = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name} ({path.name}:{node.lineno}): {n} lines")
    assert not long, "split these (STYLE.md: functions under ~60 lines):\n" + "\n".join(long)
