"""The build cache: keyed by inputs, atomic, old builds of a kind replaced."""

from __future__ import annotations

import os
from pathlib import Path

from kumo.imagebuild.cache import KEEP_BUILDS, BuildCache, digest_tree, inputs_key


def test_key_changes_with_any_input_and_not_with_order() -> None:
    base = {"deb:busybox-static": "1:1.35", "build": "1"}
    assert inputs_key(base) == inputs_key(dict(reversed(list(base.items()))))
    assert inputs_key(base) != inputs_key({**base, "build": "2"})


def test_store_keeps_the_most_recently_used_builds_of_the_kind(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path / "images")

    def build(key: str) -> Path:
        with cache.scratch("tiny") as work:
            (work / "new.qcow2").write_bytes(key.encode())
            return cache.store("tiny", key, work / "new.qcow2", {"build": key})

    for age, key in enumerate(["k1", "k2", "k3"]):
        stored = build(key)
        os.utime(stored, (1000 + age, 1000 + age))  # built long ago, k1 first
    assert KEEP_BUILDS == 3
    assert cache.lookup("tiny", "k1") is not None  # another checkout boots k1 now
    assert build("k4").read_bytes() == b"k4"
    assert [key for key in ("k1", "k2", "k3", "k4") if cache.lookup("tiny", key)] == [
        "k1", "k3", "k4"]  # k2, the least recently used, went (with its record)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()
                  if not p.name.endswith(".lock")) == [
        "tiny-k1.json", "tiny-k1.qcow2", "tiny-k3.json", "tiny-k3.qcow2",
        "tiny-k4.json", "tiny-k4.qcow2"]


def test_tree_digest_sees_content_and_mode(tmp_path: Path) -> None:
    (tmp_path / "init").write_text("#!/bin/sh\n")
    first = digest_tree(tmp_path)
    (tmp_path / "init").chmod(0o755)
    second = digest_tree(tmp_path)
    (tmp_path / "init").write_text("#!/bin/sh\necho\n")
    assert len({first, second, digest_tree(tmp_path)}) == 3
