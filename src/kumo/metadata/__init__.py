"""kumo's metadata part."""
