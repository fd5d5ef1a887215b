"""`kumo image lint` on damaged images: exit 2 and one line, never a traceback or a hang.

Crafted files name each defect the image reader once tripped over; the fuzz flips
random bytes of the tiny image (the qcow2 itself, and its raw form where the
partition table and the ext4 metadata are plain bytes) and lints each mutant.
"""

from __future__ import annotations

import gzip
import os
import random
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kumo.cli.main import app
from kumo.imagebuild.reader import open_source, partitions
from tests.diskformat.crafted import CRAFTED

MUTANTS = 100  # per form of the image: a few hundred runs in all
RUN_LIMIT = 30.0
runner = CliRunner()


def lint(path: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    result = runner.invoke(app, ["image", "lint", "--format", "json", str(path)])
    elapsed = time.monotonic() - started
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"lint raised {result.exception!r} on {path}")
    return result.exit_code, result.output, elapsed


def assert_clean_verdict(path: Path, label: str) -> int:
    code, output, elapsed = lint(path)
    assert elapsed < RUN_LIMIT, f"{label}: lint ran {elapsed:.0f} s"
    assert "Traceback" not in output, f"{label}: {output[-2000:]}"
    assert "did not expect" not in output, f"{label}: {output}"  # the last net stayed unused
    assert code in (0, 1, 2), f"{label}: exit {code}: {output}"
    if code == 2:
        assert output.startswith("kumo: ") and output.count("\n") == 1, f"{label}: {output}"
    return code


# -- crafted --------------------------------------------------------------------------


def _patched(source: Path, dest: Path, offset: int, data: bytes) -> Path:
    raw = bytearray(source.read_bytes())
    raw[offset : offset + len(data)] = data
    dest.write_bytes(bytes(raw))
    return dest


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_qcow2_headers(tiny_image: Path, tmp_path: Path, name: str) -> None:
    """The tiny image itself with each absurd header field: unreadable, said in one line."""
    image = tmp_path / "bad.qcow2"
    image.write_bytes(tiny_image.read_bytes())
    data = bytearray(image.read_bytes()[:4096])
    CRAFTED[name](data)
    _patched(image, image, 0, bytes(data))
    assert assert_clean_verdict(image, name) == 2


def test_gpt_with_absurd_entries(tmp_path: Path) -> None:
    disk = tmp_path / "gpt.raw"
    with disk.open("wb") as out:
        out.truncate(4 * 1024 * 1024)
    subprocess.run(["sfdisk", "-q", str(disk)], input=b"label: gpt\n,\n", check=True)
    # partition entries: 0xFFFFFFFF of 0xFFFFFFFF bytes each (reader.py once asked for both)
    _patched(disk, disk, 512 + 80, struct.pack("<II", 0xFFFFFFFF, 0xFFFFFFFF))
    assert assert_clean_verdict(disk, "gpt") == 2


def test_corrupt_compressed_clusters(tiny_image: Path, tmp_path: Path) -> None:
    """Every compressed cluster of the tiny image garbled: zlib errors become one line."""
    with open_source(tiny_image) as source:
        assert source.__class__.__name__ == "Qcow2Source"
    data = bytearray(tiny_image.read_bytes())
    rng = random.Random(7)
    for at in range(1024 * 1024, len(data), 4096):  # past the metadata, in the data clusters
        data[at : at + 16] = rng.randbytes(16)
    garbled = tmp_path / "garbled.qcow2"
    garbled.write_bytes(bytes(data))
    assert assert_clean_verdict(garbled, "garbled clusters") == 2


def test_zstd_qcow2_with_corrupt_cluster(tiny_image: Path, tmp_path: Path) -> None:
    image = tmp_path / "zstd.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", "-c", "-o",
                    "compression_type=zstd", str(tiny_image), str(image)], check=True)
    assert assert_clean_verdict(image, "zstd") in (0, 1)  # readable as made
    data = bytearray(image.read_bytes())
    rng = random.Random(8)
    for at in range(1024 * 1024, len(data), 4096):
        data[at : at + 16] = rng.randbytes(16)
    image.write_bytes(bytes(data))
    assert assert_clean_verdict(image, "zstd garbled") == 2


def test_initramfs_damage_is_one_line() -> None:
    from kumo.imagebuild.lint.initramfs import read_initramfs
    from kumo.imagebuild.reader import ImageUnreadable

    good = gzip.compress(b"070701" + b"0" * 104)
    for damaged in (good[:20] + b"\xff" * 40, b"\x28\xb5\x2f\xfd" + os.urandom(64),
                    b"070701" + b"zz" * 52, zlib.compress(b"x") + b"junk",
                    b"\x1f\x8b" + os.urandom(60)):
        with pytest.raises(ImageUnreadable):
            read_initramfs([damaged])


# -- random mutants -------------------------------------------------------------------


def _mutants(image: Path, regions: list[tuple[int, int]], count: int, seed: int) -> None:
    """Flip a few random bytes inside `regions` of `image`, lint, put the bytes back."""
    rng = random.Random(seed)
    codes: dict[int, int] = {}
    fd = os.open(image, os.O_RDWR)
    try:
        for number in range(count):
            start, end = rng.choice(regions)
            spots = [rng.randrange(start, end) for _ in range(rng.choice((1, 2, 4, 16)))]
            saved = [(at, os.pread(fd, 1, at)) for at in spots]
            for at in spots:
                os.pwrite(fd, bytes([rng.randrange(256)]), at)
            code = assert_clean_verdict(image, f"mutant {number} (seed {seed}) at {spots}")
            codes[code] = codes.get(code, 0) + 1
            for at, byte in reversed(saved):
                os.pwrite(fd, byte, at)
    finally:
        os.close(fd)
    assert sum(codes.values()) == count


def test_random_mutants_of_the_qcow2(tiny_image: Path, tmp_path: Path) -> None:
    image = tmp_path / "tiny.qcow2"
    image.write_bytes(tiny_image.read_bytes())
    _mutants(image, [(0, 1024 * 1024)], MUTANTS, seed=1)


def test_random_mutants_of_the_raw_disk(tiny_image: Path, tmp_path: Path) -> None:
    """The raw form: MBR, and the ext4 superblock, group descriptors and inode tables."""
    image = tmp_path / "tiny.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(tiny_image),
                    str(image)], check=True)
    with open_source(image, "raw") as source:
        root = partitions(source)[0].start
    _mutants(image, [(0, 4096), (root, root + 2 * 1024 * 1024)], MUTANTS, seed=2)
