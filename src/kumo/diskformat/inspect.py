"""What an uploaded stream really is: oslo.utils' format_inspector, fed chunk by chunk.

kumo does not parse disk formats itself. `StreamInspector` drives oslo's
`InspectWrapper` (every known format's inspector, in parallel) over the blocks of
an upload as they arrive, then decides like Glance does:

- the detected format must be the claimed `disk_format` (iso+gpt counts as iso,
  a GPT-partitioned disk counts as raw);
- the detected format's safety checks must pass (qcow2 backing file or data-file,
  vmdk flat/external extents, unknown qcow2 features, ...);
- content that matches two formats at once (a polyglot) is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from oslo_utils.imageutils import format_inspector as fi

from kumo.errors import BadRequest

# The start of a stream, where the headers of every format live, is shown to the
# inspectors in small pieces: each region capture copies the rest of the chunk it
# starts in before trimming it, so one 8 MiB first chunk would cost ~20 such copies.
HEAD_BYTES = 1024 * 1024
HEAD_PIECE = 64 * 1024

# Disk formats oslo can recognise; for the others (ami, ari, aki, ploop) kumo still
# refuses content that is recognisably some other format.
INSPECTABLE = frozenset({"raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "iso"})


class ImageFormatRefused(BadRequest):
    """The uploaded data is not what it claims to be, or is unsafe to use."""


@dataclass(frozen=True)
class Verdict:
    detected: str
    virtual_size: int


Chunk = bytes | bytearray | memoryview


class _Feed:
    """The source InspectWrapper pulls from: one chunk at a time, pushed by `feed`."""

    def __init__(self) -> None:
        self.chunk: Chunk | None = None

    def __iter__(self) -> Iterator[Chunk]:
        return self

    def __next__(self) -> Chunk:
        if self.chunk is None:
            raise StopIteration
        chunk, self.chunk = self.chunk, None
        return chunk


class StreamInspector:
    """Feed blocks with `feed()`, then call `verdict()` once the stream has ended."""

    def __init__(self, disk_format: str, container_format: str = "bare") -> None:
        self.disk_format = disk_format
        self.container_format = container_format
        self._feed = _Feed()
        expected = disk_format if disk_format in INSPECTABLE else None
        # A mismatch of the expected format stops the upload early (no need to
        # read gigabytes of a file already known to be wrong).
        self._wrapper = fi.InspectWrapper(self._feed, expected_format=expected)  # type: ignore[arg-type]
        self._done = False
        self._seen = 0

    def feed(self, chunk: Chunk) -> None:
        """Show the next bytes of the stream to every inspector (raises ImageFormatRefused).

        Inspectors get read-only views: slicing one is free, where slicing bytes or
        a bytearray copies the rest of the block.
        """
        if not chunk:
            return
        view = memoryview(chunk).toreadonly()
        while self._seen < HEAD_BYTES and len(view) > HEAD_PIECE:
            self._eat(view[:HEAD_PIECE])
            view = view[HEAD_PIECE:]
        self._eat(view)

    def _eat(self, view: memoryview) -> None:
        self._seen += len(view)
        self._feed.chunk = view
        try:
            next(self._wrapper)
        except (fi.ImageFormatError, fi.SafetyCheckFailed, fi.SafetyViolation) as exc:
            raise self._refuse(str(exc)) from None
        except Exception as exc:  # an inspector tripping over crafted content
            raise self._refuse(f"{type(exc).__name__}: {exc}") from None

    def verdict(self) -> Verdict:
        """Finish inspection; raise ImageFormatRefused unless the image is safe and as claimed."""
        if not self._done:
            self._done = True
            self._feed.chunk = None
            with contextlib.suppress(StopIteration):
                next(self._wrapper)
        try:
            formats = self._wrapper.formats or []
            names = sorted(str(f) for f in formats)
            if names == ["gpt", "iso"]:
                # A bootable (hybrid) ISO carries a GPT as well: Glance accepts it as iso.
                found = next(f for f in formats if str(f) == "iso")
            else:
                found = self._wrapper.format  # type: ignore[assignment]
        except fi.ImageFormatError as exc:
            raise self._refuse(str(exc)) from None
        if found is None:
            raise self._refuse("could not determine the image format")
        detected = str(found)
        if not self._matches(detected):
            raise self._refuse(
                f"Image content is {detected!r} but disk_format is {self.disk_format!r}"
            )
        try:
            found.safety_check()
        except fi.SafetyCheckFailed as exc:
            reasons = "; ".join(f"{name}: {err}" for name, err in exc.failures.items())
            raise self._refuse(f"Image failed the {detected} safety check ({reasons})") from None
        except fi.ImageFormatError as exc:
            raise self._refuse(str(exc)) from None
        return Verdict(detected=detected, virtual_size=int(found.virtual_size))

    def _matches(self, detected: str) -> bool:
        claimed = self.disk_format
        if detected == claimed:
            return True
        if claimed == "raw" and detected == "gpt":
            return True
        if claimed not in INSPECTABLE:
            # ami/ari/aki/ploop: oslo has no inspector; refuse only recognisable other formats.
            return detected in ("raw", "gpt")
        return False

    def _refuse(self, reason: str) -> ImageFormatRefused:
        return ImageFormatRefused(f"Image data refused: {reason}")


def inspect_file_blocks(blocks: Iterator[Chunk], disk_format: str) -> Verdict:
    """Inspect a whole stream of blocks (used for files already on disk)."""
    inspector = StreamInspector(disk_format)
    for block in blocks:
        inspector.feed(block)
    return inspector.verdict()
