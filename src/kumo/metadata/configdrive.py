"""Config drives: nova's metadata tree on an ISO 9660 image labelled `config-2`.

Same bytes as the metadata service (both render from `trees`), written with
pycdlib (ISO 9660 level 4 names, Joliet and Rock Ridge, as `genisoimage -J -r -V
config-2` would), to a temporary name first and renamed when complete. The
hypervisor attaches the file read-only as a CD-ROM; cloud-init's ds-identify finds
it by its label.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pycdlib

from kumo.metadata.instance import InstanceView
from kumo.metadata.trees import Defaults, config_drive_files

LABEL = "config-2"


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: index + 1]) for index in range(len(parts))]


def build_config_drive(view: InstanceView, dest: Path, defaults: Defaults = Defaults()) -> Path:
    """Write the server's config drive to `dest` (atomically) and return `dest`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, joliet=3, rock_ridge="1.09", vol_ident=LABEL)
    made: set[str] = set()
    # File contents are at most 64 KiB (user data) or a few KiB of JSON, so each is
    # handed to pycdlib as its own small buffer; nothing large is held.
    buffers: list[io.BytesIO] = []
    for path, data in config_drive_files(view, defaults):
        for folder in _parents(path):
            if folder not in made:
                name = folder.rsplit("/", 1)[-1]
                iso.add_directory(
                    iso_path="/" + folder, rr_name=name, joliet_path="/" + folder
                )
                made.add(folder)
        buffer = io.BytesIO(data)
        buffers.append(buffer)
        iso.add_fp(
            buffer, len(data), iso_path="/" + path + ";1",
            rr_name=path.rsplit("/", 1)[-1], joliet_path="/" + path,
        )
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as out:
            iso.write_fp(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    finally:
        iso.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dest
