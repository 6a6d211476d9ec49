"""A private copy of the source tree, to prove in a test that an extension (an SAE architecture, a
scorer) needs only the files it claims: add them to the copy, then run Python on the copy.

    tree = copy_tree(tmp_path)
    (tree / "interp/sae/arch/toy.py").write_text(...)
    edit(tree / "interp/sae/arch/registry.py", "    Neurons(),\\n",
         "    Neurons(),\\n    Toy(),\\n")
    done = run_python(tree, "from interp.sae.arch.registry import ARCHITECTURES; ...")
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("interp", "storage", "flows", "prompts")  # what the library needs at run time

# Runs first in every run_python: a test of the copy that imported the checkout instead would pass
# for the wrong reason (the venv installs interp in editable mode).
_GUARD = ("import pathlib as _p, interp as _i\n"
          "assert _p.Path(_i.__file__).is_relative_to({tree!r}), "
          "f'interp imported from {{_i.__file__}}, not from the copy'\n")


def copy_tree(tmp_path: Path) -> Path:
    """Copy interp/, storage/, flows/ and prompts/ into tmp_path/tree (no caches); returns it."""
    tree = Path(tmp_path) / "tree"
    for part in PARTS:
        shutil.copytree(ROOT / part, tree / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return tree


def edit(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of `old` in the file at path by `new` (AssertionError if `old`
    is not there exactly once: the test's assumption about the file no longer holds)."""
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: expected {old!r} exactly once"
    path.write_text(text.replace(old, new))


def run_python(tree: Path, code: str, *args: str, timeout: float = 300
               ) -> subprocess.CompletedProcess:
    """Run `code` (with args as sys.argv[1:]) in a fresh interpreter importing only from `tree`.

    The working directory is the tree: `python -c` puts it first on sys.path, before PYTHONPATH.
    """
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, "-c", _GUARD.format(tree=str(tree)) + code, *args],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
