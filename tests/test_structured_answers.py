"""The answer schemas and the strict parser of interp.llm.structured: the validator agrees with
the `jsonschema` package on the subset it checks, anything but exactly one valid JSON value is a
parse failure (never a label), and the token budget fits the longest answer."""
from __future__ import annotations

import json
import re

import jsonschema
import pytest

from interp.llm.structured import (
    PROBE_ANSWER,
    PROBE_SCHEMA,
    AnswerError,
    explanation_schema,
    labels_schema,
    max_tokens_for,
    parse_explanation,
    parse_labels,
    validate,
)

IDS = [4, 11, 7]
LABELS = labels_schema(IDS)


def _labels(ids, value=1) -> str:
    return json.dumps({"labels": {str(i): value for i in ids}})


PAIRS = {"type": "array", "minItems": 2, "maxItems": 3, "items": {
    "type": "object", "properties": {"id": {"type": "integer", "enum": [4, 11]}},
    "required": ["id"], "additionalProperties": False}}

CASES = [
    (LABELS, {"labels": {"4": 1, "11": 0, "7": 1}}),
    (LABELS, {"labels": {"7": 1, "4": 1, "11": 0}}),                      # any key order
    (LABELS, {"labels": {"4": 1, "11": 0}}),                              # an id missing
    (LABELS, {"labels": {"4": 1, "11": 0, "7": 1, "5": 0}}),              # an id not offered
    (LABELS, {"labels": {"4": 2, "11": 0, "7": 1}}),                      # label 2
    (LABELS, {"labels": {"4": True, "11": 0, "7": 1}}),                   # true is not 1
    (LABELS, {"labels": {"4": 1.0, "11": 0, "7": 1}}),                    # 1.0 is 1
    (LABELS, {"labels": {"4": "1", "11": 0, "7": 1}}),                    # a string
    (LABELS, {"labels": {"4": 1, "11": 0, "7": 1}, "why": "x"}),          # extra key
    (LABELS, {"labels": [{"id": 4, "label": 1}]}),
    (LABELS, [{"4": 1, "11": 0, "7": 1}]),                                # bare array
    (labels_schema(["a", "b"]), {"labels": {"b": 0, "a": 1}}),
    (PAIRS, [{"id": 4}, {"id": 11}]), (PAIRS, [{"id": 4}]), (PAIRS, [{"id": 4}] * 4),
    (PAIRS, [{"id": 4}, {"id": 5}]), (PAIRS, [{"id": 4}, {}]), (PAIRS, {"id": 4}),
    (explanation_schema(5), {"explanation": "cats"}),
    (explanation_schema(5), {"explanation": "kittens"}),
    (explanation_schema(5), {"explanation": "chats"}),                    # exactly 5
    (explanation_schema(5), {"explanation": "ñandú"}),                    # 5 code points
    (explanation_schema(5), {"explanation": 5}),
    (explanation_schema(40), {"explanation": "words like <<war>>(7)"}),  # the examples' marks
    (explanation_schema(40), {"explanation": "a > b"}),
    ({"type": "string", "pattern": "ab"}, "xaby"), ({"type": "string", "pattern": "^ab"}, "xab"),
    (explanation_schema(5), {"explanation": None}),
    (PROBE_SCHEMA, PROBE_ANSWER),
    (PROBE_SCHEMA, PROBE_ANSWER | {"note": "far too long"}),
    ({"type": ["string", "null"], "minLength": 2}, None),
    ({"type": ["string", "null"], "minLength": 2}, "a"),
    ({"const": [1, {"a": True}]}, [1, {"a": True}]),
    ({"const": [1, {"a": True}]}, [1, {"a": 1}]),
    ({"type": "number"}, 2.5), ({"type": "integer"}, 2.5), ({"type": "boolean"}, 0),
]


@pytest.mark.parametrize("schema,value", CASES)
def test_validate_agrees_with_jsonschema(schema, value):
    valid = jsonschema.Draft202012Validator(schema).is_valid(value)
    if valid:
        validate(value, schema)
    else:
        with pytest.raises(AnswerError):
            validate(value, schema)


def test_a_schema_outside_the_subset_is_refused_not_half_checked():
    with pytest.raises(ValueError, match="format"):
        validate("x", {"type": "string", "format": "email"})
    with pytest.raises(ValueError, match="distinct"):
        labels_schema([1, 1])


@pytest.mark.parametrize("text", [
    '[RESULT]: 1, 0, 1',                                    # a free-text answer
    'Sure! ' + _labels(IDS),                                # prose before
    _labels(IDS) + '\nHope this helps.',                    # prose after
    '```json\n' + _labels(IDS) + '\n```',                   # a code fence
    _labels(IDS) + _labels(IDS),                            # two values
    '{"labels": [], "labels": []}',                         # a key twice
    '{"labels": NaN}',
    _labels(IDS)[:-9],                                      # cut off
    '',
])
def test_anything_but_exactly_one_valid_value_is_a_parse_failure(text):
    with pytest.raises(AnswerError):
        parse_labels(text, IDS)


def test_parse_labels_maps_ids_in_the_order_given():
    text = json.dumps({"labels": {"7": 0, "4": 1, "11": 1.0}})
    assert list(parse_labels(f"\n {text} \n", IDS).items()) == [(4, 1), (11, 1), (7, 0)]
    with pytest.raises(AnswerError, match="missing"):
        parse_labels(json.dumps({"labels": {"4": 1, "7": 0}}), IDS)


def test_a_cut_off_answer_says_so():
    with pytest.raises(AnswerError, match="max_tokens"):
        parse_labels(_labels(IDS)[:-5], IDS, truncated=True)
    assert parse_explanation('{"explanation": " the token cat "}', 40) == "the token cat"
    with pytest.raises(AnswerError, match="blank"):
        parse_explanation('{"explanation": "  "}', 40)


def test_max_tokens_fits_the_longest_answer_with_whitespace():
    # A byte-level BPE spends at most one token per character of compact JSON, and a small
    # model under a grammar puts a newline-and-indent run (a token or two) in every gap.
    ids = [100 + i for i in range(10)]
    value = {"labels": {str(i): 1 for i in ids}}
    gaps = len(re.findall(r"\s+", json.dumps(value, indent=4)))
    compact = json.dumps(value, separators=(",", ":"))
    assert max_tokens_for(labels_schema(ids)) >= len(compact) + 2 * gaps
    assert max_tokens_for(labels_schema(ids[:5])) < max_tokens_for(labels_schema(ids))
    assert max_tokens_for(explanation_schema(200)) >= 200 + len('{"explanation": ""}')
    with pytest.raises(ValueError, match="maxItems"):
        max_tokens_for({"type": "array", "items": {"type": "integer"}})
    with pytest.raises(ValueError, match="maxLength"):
        max_tokens_for({"type": "string"})


@pytest.mark.parametrize("value", ["12", "", "a b/c", 'say "hi"', "back\\slash", "tab\there",
                                   "é", "\x7f", 0, 1, -17, 10**20, True, False, None, 0.5, [1, "x"]])
def test_schema_sizing_counts_json_characters_exactly(value):
    from interp.llm.structured import _json_len

    assert _json_len(value) == len(json.dumps(value))


@pytest.mark.parametrize("ids", [[3], list(range(10)), [10, 55, 99], [7, 12, 345, 6, 1000],
                                 list(range(100, 130)), ["a", "b"], list("KQDA"), ["-1", "x y"]])
def test_labels_budget_by_shape_is_the_schemas(ids):
    from interp.llm.structured import labels_max_tokens

    assert labels_max_tokens(ids) == max_tokens_for(labels_schema(ids))
