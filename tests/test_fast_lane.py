"""The fast lane's guard (tests/conftest.py): a test that uses a slow fixture without the slow
marker fails at setup, naming the marker, before the fixture runs; a marked one is deselected by
`-m "not slow"` and runs in the full suite."""
from __future__ import annotations

import pytest

CONFTEST = 'pytest_plugins = ["tests.conftest"]  # its fixtures and hooks, as in tests/\n'
TESTS = """
import pytest

def test_unmarked(model_cache):
    pass

@pytest.mark.slow
def test_marked(model_cache):
    pass

def test_plain():
    pass
"""


@pytest.fixture
def suite(pytester):
    pytester.makeini("[pytest]\nmarkers = slow: as in pyproject.toml\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_lane=TESTS)
    return pytester


def test_an_unmarked_test_with_a_slow_fixture_fails_before_the_fixture_runs(suite):
    result = suite.runpytest("-m", "not slow", "--basetemp", str(suite.path / "tmp"))
    result.assert_outcomes(passed=1, errors=1, deselected=1)
    result.stdout.fnmatch_lines(["*test_unmarked uses the fixture model_cache*@pytest.mark.slow*"])
    assert not list((suite.path / "tmp").glob("models*"))  # model_cache never ran


def test_the_full_suite_runs_the_marked_test(suite):
    result = suite.runpytest("--basetemp", str(suite.path / "tmp"))
    result.assert_outcomes(passed=2, errors=1)
    assert list((suite.path / "tmp").glob("models*"))  # the marked test got its model cache
