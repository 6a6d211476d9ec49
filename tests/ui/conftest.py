"""A tiny published catalogue for the browser and report tests, with planted content: one
explanation with distinctive text and a corpus token that is an HTML script tag."""
from __future__ import annotations

import itertools
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interp.artifacts import ArtifactRef
from tests.builders import make_shards, write_explanation_embeddings, write_logits_artifact
from tests.conftest import scripted_answer, tiny_config
from tests.fakeserver import FakeLLMServer

PLANTED = "purple elephants marching through a zoo"
SCRIPT_TOKEN = "<script>window.__pwned=1</script>"
SCRIPT_POS = 5  # planted at this position of every sequence, so most latents' windows show it
LOCAL = "http://127.0.0.1:8765"  # test clients' base URL: the app answers to loopback names only


def _plant_script(collect_dir: Path) -> None:
    table = pq.read_table(collect_dir / "sequences.parquet")
    strs = table.column("token_str").to_pylist()
    for row in strs:
        row[SCRIPT_POS] = SCRIPT_TOKEN
    table = table.set_column(table.schema.get_field_index("token_str"), "token_str",
                             pa.array(strs, pa.list_(pa.string())))
    pq.write_table(table, collect_dir / "sequences.parquet")


def _answer_with_plant():
    first = itertools.count()

    def answer(messages):
        text = scripted_answer(messages)
        if isinstance(text, str) and text.startswith("[EXPLANATION]") and next(first) == 0:
            return f"[EXPLANATION]: {PLANTED}"
        return text
    return answer


@pytest.fixture(scope="session")
def ui_home(tmp_path_factory) -> Path:
    """A home with one run (train, mine, explain with embeddings, score, logits) published."""
    from storage.catalog import publish
    from tests.builders import explain, mine, score, train_stage

    home = tmp_path_factory.mktemp("uihome")
    path = make_shards(home / "artifacts" / "collect" / "c0ffee", n_seq=40, seq_len=17, d=8)
    _plant_script(path)
    collected = ArtifactRef("collect", "c0ffee", path)
    with FakeLLMServer(_answer_with_plant()) as srv:
        cfg = tiny_config(home, srv.base_url, explain={"n_latents": 10})  # leave some unexplained
        sae = train_stage(cfg, collected)
        mined = mine(cfg, collected, sae)
        exp = explain(cfg, mined, collected)
        sc = score(cfg, exp, mined, collected, sae)
    write_explanation_embeddings(exp.path)
    arts = {"collect": collected.key, "train": sae.key, "mine": mined.key,
            "explain": exp.key, "score": sc.key, "logits": write_logits_artifact(home, sae.key)}
    run = {"run_id": "20260101T000000-test", "started_at": time.time() - 60,
           "finished_at": time.time(), "artifacts": arts, "seconds": {k: 1.0 for k in arts},
           "cached": {}}
    publish(home, arts, [run])
    return home


@pytest.fixture
def home_copy(ui_home, tmp_path) -> Path:
    """A private copy of the catalogue, for tests that change it."""
    shutil.copyfile(ui_home / "catalog.duckdb", tmp_path / "catalog.duckdb")
    return tmp_path


@pytest.fixture(scope="session")
def client(ui_home):
    from starlette.testclient import TestClient

    from interp.ui.app import create_app

    with TestClient(create_app(ui_home, preload_model=False), base_url=LOCAL) as c:
        yield c


@pytest.fixture(scope="session")
def served(ui_home):
    """The real app under uvicorn on 127.0.0.1:<free port>; yields its base URL."""
    import uvicorn

    from interp.ui.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ui_home), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 20 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def artifacts_dir(tmp_path) -> list[Path]:
    """Where screenshots go: under tmp_path, and also $INTERP_TEST_ARTIFACTS when it is set."""
    dirs = [tmp_path / "artifacts"]
    if os.environ.get("INTERP_TEST_ARTIFACTS"):
        dirs.append(Path(os.environ["INTERP_TEST_ARTIFACTS"]))
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def query(home, sql, params=()):
    """Rows of a read-only query on the test catalogue (the ground truth pages are checked against)."""
    from storage.read import connect_readonly

    con = connect_readonly(home)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()
