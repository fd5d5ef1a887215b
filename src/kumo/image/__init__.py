"""kumo's image part."""
