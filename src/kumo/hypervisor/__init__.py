"""kumo's hypervisor part."""
