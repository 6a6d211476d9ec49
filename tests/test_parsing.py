"""Parsers of LLM answers and prompt templates, on well-formed and malformed output."""
from __future__ import annotations

import pytest

from interp.examples import mark_tokens
from interp.explain import parse_explanation
from interp.prompts import load_prompt, parse_prompt
from interp.scoring.classify import parse_labels


@pytest.mark.parametrize("raw, expected", [
    ("[EXPLANATION]: years", "years"),
    ("Sure.\n[EXPLANATION]: colours of things\nmore text", "colours of things"),
    ("[explanation]: \"animals\"", "animals"),
    ("[EXPLANATION]:\n\n- The first words are verbs\n- other", "The first words are verbs"),
    ("EXPLANATION: numbers", "numbers"),
    ("[EXPLANATION]: a\n[EXPLANATION]: b", "b"),
])
def test_parse_explanation_ok(raw, expected):
    assert parse_explanation(raw) == expected


@pytest.mark.parametrize("raw", [
    "", "no marker here", "[EXPLANATION]:", "[EXPLANATION]:   \n  ", "[EXPLANATION]: N/A",
    "[EXPLANATION]: The words highlighted are:\n* a", "[EXPLANATION]: " + "x" * 500,
    "[EXPLANATION]:\nExample 1: upon the <<elevated>> land",
])
def test_parse_explanation_rejects(raw):
    assert parse_explanation(raw) is None


@pytest.mark.parametrize("raw, n, expected", [
    ("[RESULT]: 1, 0, 1", 3, [1, 0, 1]),
    ("[RESULT]: [1,0,0,1]", 4, [1, 0, 0, 1]),
    ("[RESULT]:\n1\n0", 2, [1, 0]),
    ("[RESULT]: 1, 0, 1, 1, 0", 3, [1, 0, 1]),
    ("[RESULT]: 1, 0", 3, None),
    ("1, 0, 1", 3, None),
    ("[RESULT]: 0.5, 1, 0, 10", 2, [1, 0]),
    ("[RESULT]: yes no", 2, None),
])
def test_parse_labels(raw, n, expected):
    assert parse_labels(raw, n) == expected


def test_mark_tokens_merges_runs_and_keeps_spaces():
    toks = (" The", " big", " cat", " sat", "\n")
    assert mark_tokens(toks, [False, True, True, False, False]) == "The <<big cat>> sat\\n"


def test_prompt_templates_load_and_fill():
    p = load_prompt("explain_default")
    msgs = p.messages(examples="Example 1: {braces} $dollar", top_tokens='"a"')
    assert msgs[0]["role"] == "system" and "{braces} $dollar" in msgs[-2]["content"]
    assert msgs[-1] == {"role": "assistant", "content": "[EXPLANATION]:"}
    for name in ("score_detection", "score_fuzzing"):
        assert load_prompt(name).sha


def test_prompt_errors():
    with pytest.raises(ValueError, match="not found"):
        load_prompt("nope")
    with pytest.raises(ValueError, match="must end with"):
        parse_prompt("x", "### SYSTEM\nhi\n### ASSISTANT\na\n### ASSISTANT\nb")
