"""The compute fixtures (the real compute service over the fake hypervisor) for consoles."""

from tests.compute.conftest import compute, hypervisor, images

__all__ = ["compute", "hypervisor", "images"]
