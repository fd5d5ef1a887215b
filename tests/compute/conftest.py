"""Compute fixtures: the real compute service and API over in-memory fakes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kumo.compute.images import BootImage
from kumo.compute.service import ComputeService
from kumo.runtime import Runtime
from tests.compute.fakes import FakeHypervisor, FakeImages, FakeMetadata

IMAGE_ID = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def hypervisor() -> FakeHypervisor:
    return FakeHypervisor()


@pytest.fixture
def images() -> FakeImages:
    fake = FakeImages()
    fake.add(BootImage(IMAGE_ID, "tiny", "active", min_disk=1, min_ram=64,
                       virtual_size=512 * 1024**2, properties={"os_admin_user": "root"}))
    return fake


@pytest.fixture
def compute(runtime: Runtime, hypervisor: FakeHypervisor, images: FakeImages,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComputeService]:
    service = ComputeService(runtime, hypervisor, FakeMetadata(tmp_path_factory.mktemp("md")),
                             images)
    runtime.services["compute"] = service
    yield service
    service.wait_idle()
