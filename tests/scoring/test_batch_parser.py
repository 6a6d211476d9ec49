"""The strict batch-mode judge parser: exactly n answers in item order, or a parse failure.

A label must never shift onto another window: item numbers are not answers, extra or missing
answers fail the batch, and numbered answers are checked against their positions.
"""
from __future__ import annotations

import pytest

from interp.scoring.classifier import parse_labels


@pytest.mark.parametrize("raw, n, expected", [
    # bare lists of exactly n answers
    ("[RESULT]: 1, 0, 1", 3, [1, 0, 1]),
    ("[RESULT]: [1,0,0,1]", 4, [1, 0, 0, 1]),
    ("[RESULT]:\n1\n0", 2, [1, 0]),
    ("[RESULT]: yes no", 2, [1, 0]),
    ("[RESULT]: 1.", 1, [1]),
    ("[RESULT]: 1, 0\n\nExample 3 looks like a 1", 2, [1, 0]),   # text after a blank line ignored
    # numbered answers give the right labels ...
    ("[RESULT]: 1) 1\n2) 0\n3) 1", 3, [1, 0, 1]),
    ("[RESULT]:\nExample 1: 0\nExample 2: 1", 2, [0, 1]),
    ("[RESULT]: 1. yes, 2. no", 2, [1, 0]),
    ("[RESULT]: 1: 0; 2: 0; 3: 1", 3, [0, 0, 1]),
    ("[RESULT]: 1) 1", 1, [1]),
    ("[RESULT]: Example 2: 0", 1, None),          # ... or fail: the only answer is item 2's
    ("[RESULT]: 1) 1\n3) 0", 2, None),             # a gap
    ("[RESULT]: 2) 1\n1) 0", 2, None),             # out of order
    ("[RESULT]: 1) 1\n2) 0\n3) 1", 2, None),       # more answers than items
    ("[RESULT]: 1) 1, 0", 2, None),                # numbered and bare mixed
    ("[RESULT]: 1 1\n2 0", 2, None),               # numbers without a separator: ambiguous
    ("[RESULT]: 1) 10", 1, None),
    # wrong counts, prose and non-answers fail
    ("[RESULT]: 1, 0, 1, 1, 0", 3, None),
    ("[RESULT]: 1, 0", 3, None),
    ("1, 0, 1", 3, None),                          # no marker
    ("[RESULT]: 0.5, 1, 0, 10", 2, None),
    ("[RESULT]: 1, 0 because the first one matches", 2, None),
    ("[RESULT]: maybe, 1", 2, None),
    ("[RESULT]:", 1, None),
])
def test_parse_labels(raw, n, expected):
    assert parse_labels(raw, n) == expected


def test_an_item_number_never_becomes_a_label():
    # The old parser took any standalone 0/1 here: the item number "1" became the first label.
    for n in (1, 2, 3, 4):
        got = parse_labels("[RESULT]: Example 1: 1, Example 2: 0", n)
        assert got == ([1, 0] if n == 2 else None)


@pytest.mark.parametrize("raw, n, expected", [
    ("[RESULT]: 3", 5, 3), ("[RESULT]: Example 2", 5, 2), ("[RESULT]: 4.", 5, 4),
    ("[RESULT]: 6", 5, None), ("[RESULT]: 0", 5, None), ("[RESULT]: 2 or 3", 5, None),
    ("[RESULT]: the third", 5, None), ("3", 5, None),
])
def test_intruder_choice_parser(raw, n, expected):
    from interp.scoring.intruder import parse_choice

    assert parse_choice(raw, n) == expected
