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

    def fill(tmp):
        (tmp / "half.bin").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.build_once("train", "k", fill)
    assert store.get("train", "k") is None
    assert [p for p in (tmp_path / "artifacts" / "train").iterdir() if p.is_dir()] == []


def test_resumable_build_keeps_partial(tmp_path):
    store = ArtifactStore(tmp_path)

    def crash(tmp):
        (tmp / "part-00000.parquet").write_text("x")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        store.build_once("explain", "k", crash, resumable=True)
    seen = []

    def resume(tmp):
        seen.append((tmp / "part-00000.parquet").exists())  # the re-run sees the finished part
        return {"n": 1}

    ref = store.build_once("explain", "k", resume, inputs={"mine": "m"}, resumable=True)
    assert seen == [True]
    man = ref.manifest()
    assert man["n"] == 1 and man["inputs"] == {"mine": "m"} and man["stage"] == "explain"
    assert (ref.path / "part-00000.parquet").exists()
    # A second build is a cache hit: fill is not called again.
    assert store.build_once("explain", "k", lambda tmp: seen.append("again") or {}) == ref
    assert seen == [True]


def test_manifest_returned_not_aliased(tmp_path):
    store = ArtifactStore(tmp_path)
    manifest = {"a": 1}
    ref = store.build_once("mine", "k", lambda tmp: manifest)
    assert manifest == {"a": 1} and ref.manifest()["a"] == 1


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


def test_a_file_replaced_atomically_is_the_old_or_the_whole_new_one(tmp_path):
    """replaced_atomically: the caller writes a temp path beside the target; on success it is
    renamed into place, on failure removed, the old file untouched; no temp file either way."""
    from interp.artifacts import replaced_atomically

    target = tmp_path / "sub" / "x.parquet"
    with replaced_atomically(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".x.parquet.")
        tmp.write_text("first")
        assert not target.exists()  # nothing at the target until the write is done
    assert target.read_text() == "first"
    with pytest.raises(OSError, match="disk on fire"):
        with replaced_atomically(target) as tmp:
            tmp.write_text("half")
            raise OSError("disk on fire")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.parquet"]
