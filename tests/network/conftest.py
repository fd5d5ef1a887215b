"""Network fixtures: the compute service over fakes, shared with tests/compute."""

from tests.compute.conftest import compute, hypervisor, images

__all__ = ["compute", "hypervisor", "images"]
