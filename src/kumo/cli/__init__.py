"""kumo's cli part."""
