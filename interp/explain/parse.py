"""Reading the explainer's answer: a JSON object `{"explanation": ...}` when the server constrains
answers to a schema (interp/llm/structured.py; with a `reasoning` field first when the template
asks the model to reason before it answers), else the text after its one `[EXPLANATION]:`
marker. An answer that does not parse is stored as `parse_error`; one that parses but echoes the
prompt's examples or instructions as `echo`. Neither is ever scored."""
from __future__ import annotations

import functools
import re

from interp.llm.structured import AnswerError, explanation_schema, parse_json
from interp.prompts import Prompt, parse_prompt, prompt_dirs

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


def answer_schema(prompt: Prompt, max_chars: int) -> dict:
    """The JSON schema of the explainer's answer: the explanation (at most max_chars), after a
    `reasoning` field when the template makes the model reason first (its prefilled answer turn
    is not the explanation marker, e.g. explain_cot's "Marked words:")."""
    schema = explanation_schema(max_chars)
    last_role, last_text = prompt.turns[-1]
    if last_role == "assistant" and not MARKER.fullmatch(last_text.strip()):
        reasoning = {"type": "string", "maxLength": 3 * max_chars}
        schema["properties"] = {"reasoning": reasoning, **schema["properties"]}
        schema["required"] = ["reasoning", *schema["required"]]
    return schema


def parse_structured(raw: str, schema: dict, *, truncated: bool = False) -> tuple[str | None, str | None]:
    """(explanation, None) from a constrained answer, or (None, status) with status 'parse_error'
    (not the schema's JSON: never happens under a grammar unless cut off) or 'echo' (it parses,
    but copies the prompt's examples, marks or instructions)."""
    try:
        answer = parse_json(raw, schema, truncated=truncated)
    except AnswerError:
        return None, "parse_error"
    text = _clean(answer["explanation"].strip().splitlines()[0] if answer["explanation"].strip() else "")
    if not text or text.lower() in {"none", "n/a", "<explanation>"}:
        return None, "parse_error"
    if ECHO.match(text) or MARKUP.search(text) or \
            _echoes_prompt(answer.get("reasoning", "") + "\n" + text, raw):
        return None, "echo"
    return text, None
