"""Structured answers: JSON schemas for the judge's and the explainer's answers, a strict parser
that validates an answer against its schema, and the token budget an answer needs.

The schemas keep to one small subset of JSON Schema (`KEYWORDS`) that the servers we use can
constrain decoding with (llama.cpp's json-schema-to-grammar, vLLM's xgrammar / guidance). The
validator checks exactly that subset and refuses a schema that uses anything else, so no
constraint is ever silently left unchecked. The library does not depend on `jsonschema`; the
tests check this validator against it.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

# Keywords the validator checks, and annotations it ignores.
KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "items",
                      "minItems", "maxItems", "enum", "const", "minLength", "maxLength",
                      "pattern"})
# An explanation is prose about the examples, never their <<marked>>(7) notation: the grammar
# makes the 135M explainer's echoes of the marked examples impossible (2 of 24 on the default run
# were such echoes, rejected afterwards), and the strict parser refuses them on servers without
# a grammar. A plain character class: every server's JSON-schema regex dialect reads it alike.
NO_MARKS = "^[^<>]*$"
ANNOTATIONS = frozenset({"title", "description"})

# Token budget of an answer (`max_tokens_for`): one token per character of the longest compact
# answer bounds what a byte-level BPE spends on JSON punctuation, digits and English text (it
# uses about half that); a grammar also lets the model put whitespace between tokens (llama.cpp:
# up to two newlines and 20 spaces), which a small model does ("{\n\n\"labels\": [\n\n{\n    ...").
WHITESPACE_TOKENS = 2   # per place where the grammar allows whitespace
END_TOKENS = 4          # end of turn, and a little slack
NUMBER_CHARS = 20       # a number without an enum: up to a 64-bit integer's digits and sign


class AnswerError(ValueError):
    """An answer that is not exactly one valid instance of its schema: a parse failure, never a
    result (never a label, never a score)."""


def labels_schema(ids: Sequence[int | str]) -> dict[str, Any]:
    """`{"labels": {"<id>": 0 or 1, ...}}`: every id once, as a key, in the order given.

    Not an array of {id, label} items with id an enum of the ids: under that grammar the 135M
    judge repeated ids (`{"id": 15, ...}, {"id": 15, ...}`) in 20 of 20 answers over 10 ids
    (bench/structured_parse_rate.py). As required keys, the grammar writes each id itself, in
    order (llama.cpp and vLLM emit required properties in schema order), and the model only
    chooses the labels, in half the tokens. Wrapped in an object because OpenAI-style strict
    structured outputs take only an object at the root.
    """
    keys = [str(i) for i in ids]
    if not ids or len(set(keys)) != len(keys):
        raise ValueError(f"labels_schema needs distinct ids, got {list(ids)!r}")
    label = {"type": "integer", "enum": [0, 1]}
    return _root({"labels": _root({k: label for k in keys})})


def keyed_schema(field: str, values: dict[int | str, dict[str, Any]]) -> dict[str, Any]:
    """`{field: {"<key>": <its value>, ...}}`: every key once, in order, each answered as its
    schema says (labels_schema's layout for other answers: an intruder's number per round, a
    simulated activation list per window)."""
    if not values:
        raise ValueError("keyed_schema needs at least one key")
    return _root({field: _root({str(k): v for k, v in values.items()})})


def choice_schema(n: int) -> dict[str, Any]:
    """One of 1..n (an intruder's number)."""
    return {"type": "integer", "enum": list(range(1, n + 1))}


def digits_schema(n: int) -> dict[str, Any]:
    """Exactly n digits 0-9 (a window's simulated activations, one per token)."""
    return {"type": "array", "items": {"type": "integer", "enum": list(range(10))},
            "minItems": n, "maxItems": n}


def explanation_schema(max_chars: int) -> dict[str, Any]:
    """`{"explanation": "<at most max_chars characters, no < or >>"}` (NO_MARKS)."""
    if max_chars < 1:
        raise ValueError(f"explanation_schema needs max_chars >= 1, got {max_chars}")
    return _root({"explanation": {"type": "string", "maxLength": max_chars, "pattern": NO_MARKS}})


def _root(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def parse_labels(text: str, ids: Sequence[int | str], *, truncated: bool = False) -> dict:
    """{id: 0 or 1} in the order of `ids` from an answer to `labels_schema(ids)`; AnswerError
    unless the answer is valid JSON of that schema (every id labelled, once, nothing else)."""
    labels = parse_json(text, labels_schema(ids), truncated=truncated)["labels"]
    return {i: int(labels[str(i)]) for i in ids}


def parse_explanation(text: str, max_chars: int, *, truncated: bool = False) -> str:
    """The explanation in an answer to `explanation_schema(max_chars)`; AnswerError if invalid
    or blank."""
    explanation = parse_json(text, explanation_schema(max_chars), truncated=truncated)["explanation"]
    if not explanation.strip():
        raise AnswerError("the explanation is blank")
    return explanation.strip()


def parse_json(text: str, schema: dict[str, Any], *, truncated: bool = False) -> Any:
    """The one JSON value that `text` is (surrounding whitespace allowed), validated against
    `schema`. Anything else is an AnswerError: prose around it, a code fence, two values, a
    duplicated key, NaN, or an answer cut off at max_tokens (`truncated` names that cause)."""
    try:
        value = json.loads(text.strip(), object_pairs_hook=_no_duplicate_keys,
                           parse_constant=_no_constant)
    except ValueError as err:
        cause = "cut off at max_tokens (size it with max_tokens_for)" if truncated \
            else "not one JSON value"
        raise AnswerError(f"{cause}: {err}: {_clip(text)}") from None
    validate(value, schema)
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("a key appears twice in one object")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _clip(text: str) -> str:
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> None:
    """Raise AnswerError naming the first place where `value` breaks `schema` (JSON Schema
    semantics, as the `jsonschema` package has them, for the keywords in KEYWORDS); ValueError
    if the schema uses a keyword outside them."""
    unknown = set(schema) - KEYWORDS - ANNOTATIONS
    if unknown:
        raise ValueError(f"schema keyword(s) {sorted(unknown)} at {path} are outside the subset "
                         f"interp.llm.structured checks: {sorted(KEYWORDS)}")
    if "type" in schema and not _has_type(value, schema["type"]):
        raise AnswerError(f"{path}: {_short(value)} is not of type {schema['type']}")
    if "enum" in schema and not any(_equal(value, e) for e in schema["enum"]):
        raise AnswerError(f"{path}: {_short(value)} is not one of {schema['enum']}")
    if "const" in schema and not _equal(value, schema["const"]):
        raise AnswerError(f"{path}: {_short(value)} is not {schema['const']!r}")
    if isinstance(value, str):
        if len(value) > schema.get("maxLength", len(value)):
            raise AnswerError(f"{path}: {len(value)} characters, more than {schema['maxLength']}")
        if len(value) < schema.get("minLength", 0):
            raise AnswerError(f"{path}: {len(value)} characters, fewer than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise AnswerError(f"{path}: {_short(value)} does not match {schema['pattern']!r}")
    elif isinstance(value, list):
        _validate_array(value, schema, path)
    elif isinstance(value, dict):
        _validate_object(value, schema, path)


def _validate_array(value: list, schema: dict[str, Any], path: str) -> None:
    if len(value) < schema.get("minItems", 0):
        raise AnswerError(f"{path}: {len(value)} items, fewer than {schema['minItems']}")
    if len(value) > schema.get("maxItems", len(value)):
        raise AnswerError(f"{path}: {len(value)} items, more than {schema['maxItems']}")
    if "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{path}[{i}]")


def _validate_object(value: dict, schema: dict[str, Any], path: str) -> None:
    properties = schema.get("properties", {})
    missing = [k for k in schema.get("required", []) if k not in value]
    if missing:
        raise AnswerError(f"{path}: missing {missing}")
    if schema.get("additionalProperties", True) is False:
        extra = [k for k in value if k not in properties]
        if extra:
            raise AnswerError(f"{path}: unexpected key(s) {extra}")
    elif not isinstance(schema.get("additionalProperties", True), bool):
        raise ValueError(f"schema at {path}: additionalProperties must be true or false here")
    for key, sub in properties.items():
        if key in value:
            validate(value[key], sub, f"{path}.{key}")


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def _has_type(value: Any, expected: str | list[str]) -> bool:
    if isinstance(expected, list):
        return any(_has_type(value, t) for t in expected)
    if expected == "null":
        return value is None
    if expected in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return expected == "number" or isinstance(value, int) or value.is_integer()
    if expected not in _TYPES:
        raise ValueError(f"schema type {expected!r} is not a JSON Schema type")
    return isinstance(value, _TYPES[expected])


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1 (Python says it is), 1.0 is 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _short(value: Any) -> str:
    return _clip(json.dumps(value))


def max_tokens_for(schema: dict[str, Any]) -> int:
    """A max_tokens that fits the longest answer `schema` allows, whitespace included (see
    WHITESPACE_TOKENS): under a grammar the model stops when the answer is complete, so a
    generous budget costs nothing; one cut off anyway fails `parse_json`. ValueError for a
    schema without a bound (an array without maxItems, a string without maxLength)."""
    chars, slots = _longest(schema, "$")
    return chars + WHITESPACE_TOKENS * slots + END_TOKENS


def labels_max_tokens(ids: Sequence[int | str]) -> int:
    """max_tokens_for(labels_schema(ids)), sized once per shape: the budget depends only on
    the keys' JSON lengths (_longest), and the one-call scorers ask with fresh ids per latent."""
    shape = tuple(sorted(_json_len(str(i)) for i in ids))
    if shape not in _LABEL_BUDGETS:
        if len(_LABEL_BUDGETS) >= 256:
            _LABEL_BUDGETS.clear()
        _LABEL_BUDGETS[shape] = max_tokens_for(labels_schema(ids))
    return _LABEL_BUDGETS[shape]


_LABEL_BUDGETS: dict[tuple[int, ...], int] = {}


def _json_len(value: Any) -> int:
    """len(json.dumps(value)), without encoding the common cases (schemas are sized for every
    request: window ids as keys, 0/1 enums)."""
    if isinstance(value, str) and value.isascii() and value.isprintable() \
            and '"' not in value and "\\" not in value:
        return len(value) + 2
    if type(value) is int:
        return len(str(value))
    return len(json.dumps(value))


def _longest(schema: dict[str, Any], path: str) -> tuple[int, int]:
    """(characters of the longest compact instance, places whitespace may go in it)."""
    if "const" in schema:
        return _json_len(schema["const"]), 0
    if "enum" in schema:
        return max(_json_len(v) for v in schema["enum"]), 0
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        if schema.get("additionalProperties", True) is not False:
            raise ValueError(f"schema at {path} allows any key: set additionalProperties false")
        parts = [_longest(sub, f"{path}.{k}") for k, sub in props.items()]
        # '{' and '}', per key its quoted name and ':', ',' between members
        chars = 2 + sum(_json_len(k) + 1 + c for k, (c, _) in zip(props, parts)) \
            + max(len(props) - 1, 0)
        return chars, 2 + 2 * len(props) + sum(s for _, s in parts)
    if kind == "array":
        if "maxItems" not in schema:
            raise ValueError(f"schema at {path} has no maxItems: the answer has no length bound")
        n = schema["maxItems"]
        c, s = _longest(schema.get("items", {}), f"{path}[]") if n else (0, 0)
        return 2 + n * c + max(n - 1, 0), 2 + n * (s + 1)
    if kind == "string":
        if "maxLength" not in schema:
            raise ValueError(f"schema at {path} has no maxLength: the answer has no length bound")
        return 2 + schema["maxLength"], 0
    if kind in ("integer", "number"):
        return NUMBER_CHARS, 0
    if kind in ("boolean", "null"):
        return 5, 0
    raise ValueError(f"schema at {path}: cannot bound the length of type {kind!r}")


# One request that only a server applying the constraint answers validly (nothing in the prompt
# asks for JSON), using every keyword the builders above emit: a server that refuses one of them
# (OpenAI's strict mode documents no maxLength) is found out once, not latent by latent.
PROBE_SCHEMA = _root({"labels": labels_schema([3, 8])["properties"]["labels"],
                      "note": {"type": "string", "maxLength": 8}})
PROBE_ANSWER = {"labels": {"3": 0, "8": 1}, "note": "hi"}  # one valid answer (for tests)
PROBE_MESSAGES = [{"role": "user", "content": "Say hello in one word."}]
