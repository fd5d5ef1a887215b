"""kumo's identity part."""
