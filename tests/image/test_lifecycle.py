"""The status machine and the format/visibility checks."""

from __future__ import annotations

import pytest

from kumo.errors import BadRequest, Conflict
from kumo.image import lifecycle


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("queued", "saving"),
        ("saving", "active"),
        ("saving", "queued"),
        ("active", "deactivated"),
        ("deactivated", "active"),
        ("active", "deleted"),
        ("queued", "deleted"),
    ],
)
def test_allowed_transitions(current: str, new: str) -> None:
    lifecycle.check_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("queued", "deactivated"),
        ("active", "saving"),
        ("active", "queued"),
        ("deleted", "active"),
        ("killed", "active"),
        ("deactivated", "saving"),
    ],
)
def test_refused_transitions(current: str, new: str) -> None:
    with pytest.raises(Conflict, match=f"from {current} to {new}"):
        lifecycle.check_transition(current, new)


def test_upload_only_to_a_queued_image_with_formats() -> None:
    lifecycle.check_upload_allowed("queued", "qcow2", "bare")
    with pytest.raises(Conflict):
        lifecycle.check_upload_allowed("active", "qcow2", "bare")
    with pytest.raises(BadRequest, match="container_format"):
        lifecycle.check_upload_allowed("queued", "qcow2", None)


def test_format_and_visibility_values() -> None:
    assert lifecycle.check_disk_format("qcow2") == "qcow2"
    assert lifecycle.check_disk_format(None) is None
    assert lifecycle.check_container_format("bare") == "bare"
    for bad in ("QCOW2", "img", 3):
        with pytest.raises(BadRequest):
            lifecycle.check_disk_format(bad)
    with pytest.raises(BadRequest):
        lifecycle.check_visibility("internal")
    with pytest.raises(BadRequest):
        lifecycle.check_member_status("maybe")
