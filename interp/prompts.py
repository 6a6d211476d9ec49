"""Prompt templates: files in prompts/, loaded by name, hashed into cache keys and explanation rows.

A template is a sequence of `### SYSTEM`, `### USER` and `### ASSISTANT` sections (few-shot
demonstrations are USER/ASSISTANT pairs before the final USER turn). `$name` placeholders are
filled with string.Template, so braces in corpus text are harmless.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template

_SECTION = re.compile(r"^### (SYSTEM|USER|ASSISTANT)\s*$", re.MULTILINE)


def prompt_dirs() -> list[Path]:
    """Where templates are looked up: the source checkout, then the installed data files."""
    return [_SOURCE_PROMPTS, Path(sys.prefix) / "share" / "interp" / "prompts"]


# Resolved once: scorers load their template per latent, and resolving a path is several stats.
_SOURCE_PROMPTS = Path(__file__).resolve().parents[1] / "prompts"


@dataclass(frozen=True)
class Prompt:
    name: str
    turns: tuple[tuple[str, str], ...]   # (role, template text)
    sha: str

    def messages(self, **values: object) -> list[dict[str, str]]:
        fill = {k: str(v) for k, v in values.items()}
        return [{"role": role, "content": Template(text).substitute(fill)} for role, text in self.turns]


def parse_prompt(name: str, text: str) -> Prompt:
    parts = _SECTION.split(text)
    turns = tuple((role.lower(), body.strip()) for role, body in zip(parts[1::2], parts[2::2]))
    last_user = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=-1)
    if last_user < len(turns) - 2 or last_user == -1:
        raise ValueError(f"prompt {name!r} must end with a '### USER' section, optionally followed "
                         "by one '### ASSISTANT' section that the answer continues (prefill)")
    if any(role == "system" for role, _ in turns[1:]):
        raise ValueError(f"prompt {name!r}: '### SYSTEM' may only come first")
    return Prompt(name, turns, hashlib.sha256(text.encode()).hexdigest()[:16])


# Within a stage build (interp.stages.build): each prompt as first loaded, by name.
_PINNED: contextvars.ContextVar[dict[str, Prompt] | None] = contextvars.ContextVar(
    "interp_pinned_prompts", default=None)


@contextlib.contextmanager
def pinned_prompts() -> Iterator[None]:
    """Within: every load of a prompt returns the version first loaded here. A stage hashes its
    prompts into its key before it runs: a file edited during a long run must not change what
    the rest of that run sends under the old key (the next run sees the edit, under a new key).
    It also spares the per-request stat: scorers load their template for every latent. The pin
    follows the context into the stage's event loop and its worker threads."""
    token = _PINNED.set({})
    try:
        yield
    finally:
        _PINNED.reset(token)


def load_prompt(name: str) -> Prompt:
    pinned = _PINNED.get()
    if pinned is None:
        return _load(name)
    if name not in pinned:
        pinned[name] = _load(name)
    return pinned[name]


def _load(name: str) -> Prompt:
    for d in prompt_dirs():
        path = d / f"{name}.md"
        if path.is_file():
            st = path.stat()
            return _parsed(name, str(path), st.st_mtime_ns, st.st_size)
    raise ValueError(f"prompt {name!r} not found (looked for {name}.md in "
                     f"{', '.join(str(d) for d in prompt_dirs())})")


@functools.lru_cache(maxsize=256)
def _parsed(name: str, path: str, mtime_ns: int, size: int) -> Prompt:
    """A prompt file read and parsed once per version of it (scorers load their template for
    every request: reading, parsing and hashing it each time was a tenth of the score stage's
    client CPU in bench/llm_scale.py). An edited file has a new mtime or size: read again."""
    return parse_prompt(name, Path(path).read_text())
