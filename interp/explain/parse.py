"""Reading the explainer's answer: the explanation after its one `[EXPLANATION]:` marker, or None
when the answer is unusable (no marker or two, empty, too long, or an echo of the prompt's
examples or instructions). An unusable answer is stored as `parse_error` and never scored."""
from __future__ import annotations

import functools
import re

from interp.prompts import parse_prompt, prompt_dirs

ECHO = re.compile(r"^(example|strengths)\s*\d*\s*:", re.IGNORECASE)
MARKER = re.compile(r"\[?\s*EXPLANATION\s*\]?\s*:", re.IGNORECASE)
# A copied example line ("Example 3: ...", "Counter-example 1: ...") anywhere in the answer, and
# the examples' <<marked>>(7) notation in the explanation itself, are echoes of the prompt.
EXAMPLE_LINE = re.compile(r"^\W*(counter-?)?examples?\s*\d+\s*:", re.IGNORECASE | re.MULTILINE)
MARKUP = re.compile(r"<<[^<>\n]*>>")
# Instruction text split at placeholders, lines and sentence ends; a piece this long repeated in
# an answer is an echo of the instructions (short ones like "Marked words:" are the cot format).
_INSTRUCTION_SPLIT = re.compile(r"\$\w+|\n|(?<=[.?!])\s")
ECHO_MIN_CHARS = 24

_BULLET = re.compile(r"^([-*•]|\d+[.)])\s+")


def _clean(line: str) -> str:
    return _BULLET.sub("", line).strip().strip('"\'`*').strip()


@functools.lru_cache(maxsize=1)
def _instruction_pieces() -> frozenset[str]:
    """Lower-cased sentences of the explainer templates' SYSTEM and USER turns."""
    pieces = set()
    for d in prompt_dirs():
        for path in sorted(d.glob("explain_*.md")) if d.is_dir() else []:
            for role, text in parse_prompt(path.stem, path.read_text()).turns:
                if role != "assistant":
                    pieces.update(p.strip().lower() for p in _INSTRUCTION_SPLIT.split(text)
                                  if len(p.strip()) >= ECHO_MIN_CHARS)
    return frozenset(pieces)


def _echoes_prompt(answer: str, raw: str) -> bool:
    """An example line in the reasoning or explanation (`answer`; small models often invent a
    next "Example 4:" after their answer line, which is harmless), or a sentence of the
    instructions anywhere in `raw`."""
    low = raw.lower()
    return bool(EXAMPLE_LINE.search(answer)) or any(p in low for p in _instruction_pieces())


def parse_explanation(raw: str) -> str | None:
    """The explanation after the one marker (its first non-empty line), or None if unusable.

    A first line ending in ':' that introduces a bulleted list ("The marked words are:\n* a\n* b")
    is read as that list, joined on one line (up to 6 distinct items): a list of the activating
    words is a legitimate, if shallow, explanation. A copied input example is not. Nor is an
    answer with a second marker anywhere (an example's text can carry one, a prompt injection
    that the model copies) or whose reasoning or explanation repeats the prompt's examples or
    instructions.
    """
    matches = list(MARKER.finditer(raw))
    if len(matches) != 1:
        return None
    lines = [ln.strip() for ln in raw[matches[0].end():].splitlines() if ln.strip()]
    if not lines:
        return None
    text = _clean(lines[0])
    if text.endswith(":"):
        items = list(dict.fromkeys(_clean(ln) for ln in lines[1:] if _BULLET.match(ln)))
        items = [i for i in items if i and not ECHO.match(i)]
        text = f"{text} {', '.join(items[:6])}" if items else ""
    if not text or len(text) > 400 or text.lower() in {"none", "n/a", "<explanation>"}:
        return None
    if ECHO.match(text) or MARKUP.search(text):
        return None  # the model copied an input example instead of explaining
    if _echoes_prompt(raw[:matches[0].start()] + "\n" + text, raw):
        return None
    return text
