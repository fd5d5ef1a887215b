"""kumo's compute part."""
