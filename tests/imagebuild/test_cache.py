"""The build cache: keyed by inputs, atomic, old builds of a kind replaced."""

from __future__ import annotations

from pathlib import Path

from kumo.imagebuild.cache import BuildCache, digest_tree, inputs_key


def test_key_changes_with_any_input_and_not_with_order() -> None:
    base = {"deb:busybox-static": "1:1.35", "build": "1"}
    assert inputs_key(base) == inputs_key(dict(reversed(list(base.items()))))
    assert inputs_key(base) != inputs_key({**base, "build": "2"})


def test_store_replaces_older_builds_of_the_kind(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path / "images")
    with cache.scratch("tiny") as work:
        (work / "a.qcow2").write_bytes(b"first")
        cache.store("tiny", "k1", work / "a.qcow2", {"build": "1"})
    assert cache.lookup("tiny", "k1") is not None
    with cache.scratch("tiny") as work:
        (work / "b.qcow2").write_bytes(b"second")
        stored = cache.store("tiny", "k2", work / "b.qcow2", {"build": "2"})
    assert stored.read_bytes() == b"second"
    assert cache.lookup("tiny", "k1") is None
    assert sorted(p.name for p in (tmp_path / "images").iterdir() if not p.name.endswith(".lock")) \
        == ["tiny-k2.json", "tiny-k2.qcow2"]


def test_tree_digest_sees_content_and_mode(tmp_path: Path) -> None:
    (tmp_path / "init").write_text("#!/bin/sh\n")
    first = digest_tree(tmp_path)
    (tmp_path / "init").chmod(0o755)
    second = digest_tree(tmp_path)
    (tmp_path / "init").write_text("#!/bin/sh\necho\n")
    assert len({first, second, digest_tree(tmp_path)}) == 3
