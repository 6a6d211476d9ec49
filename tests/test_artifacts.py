"""Artifact store: stable keys, atomic builds, locks, resumable temp dirs."""
from __future__ import annotations

import threading
import time

import pytest

from interp.artifacts import ArtifactStore, artifact_key


def test_key_depends_on_config_inputs_version_only():
    a = artifact_key("mine", "1", {"x": 1, "y": 2}, {"sae": "k1"})
    assert a == artifact_key("mine", "1", {"y": 2, "x": 1}, {"sae": "k1"})
    assert a != artifact_key("mine", "2", {"x": 1, "y": 2}, {"sae": "k1"})
    assert a != artifact_key("mine", "1", {"x": 1, "y": 3}, {"sae": "k1"})
    assert a != artifact_key("mine", "1", {"x": 1, "y": 2}, {"sae": "k2"})


def test_failed_build_leaves_nothing(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.build("train", "k", {}) as tmp:
            (tmp / "half.bin").write_text("x")
            raise RuntimeError("boom")
    assert store.get("train", "k") is None
    assert list((tmp_path / "artifacts" / "train").iterdir()) == []


def test_resumable_build_keeps_partial(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.build("explain", "k", {}, resumable=True) as tmp:
            (tmp / "part-00000.parquet").write_text("x")
            raise RuntimeError("crash")
    with store.build("explain", "k", {"n": 1}, resumable=True) as tmp:
        assert (tmp / "part-00000.parquet").exists()  # the re-run sees the finished part
    ref = store.require("explain", "k")
    assert ref.manifest()["n"] == 1 and (ref.path / "part-00000.parquet").exists()


def test_lock_serialises_builders(tmp_path):
    store = ArtifactStore(tmp_path)
    events = []

    def builder(name):
        with store.lock("mine", "k"):
            events.append(f"{name}-in")
            time.sleep(0.2)
            events.append(f"{name}-out")

    threads = [threading.Thread(target=builder, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert events[0][0] == events[1][0] and events[2][0] == events[3][0]


def test_require_names_missing_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the collect stage"):
        ArtifactStore(tmp_path).require("collect", "nope")
