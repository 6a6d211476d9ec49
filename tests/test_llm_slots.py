"""Crash-safe LLM request slots: shared between processes, freed when a holder is killed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from interp.llm.slots import hold_slots, slot_dir


def test_slots_are_shared_and_bounded(tmp_path):
    d = slot_dir(tmp_path, "http://server/v1")
    with hold_slots(d, limit=3, wanted=2) as a:
        assert a == 2
        with hold_slots(d, limit=3, wanted=4) as b:
            assert b == 1  # only what is free; never more than the limit in all
            with pytest.raises(TimeoutError, match="held by pid"):
                with hold_slots(d, limit=3, wanted=1, timeout_s=0.5):
                    pass
    with hold_slots(d, limit=3, wanted=5) as c:
        assert c == 3  # everything was released on exit


@pytest.mark.slow  # a SIGKILLed child
def test_killed_holder_frees_its_slots_at_once(tmp_path):
    d = slot_dir(tmp_path, "model")
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from interp.llm.slots import hold_slots
        with hold_slots(Path({str(d)!r}), limit=2, wanted=2):
            print("held", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=os.environ | {"PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(TimeoutError):
        with hold_slots(d, limit=2, wanted=1, timeout_s=0.3):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    with hold_slots(d, limit=2, wanted=2, timeout_s=5) as n:
        assert n == 2
    assert time.monotonic() - t0 < 1.0
