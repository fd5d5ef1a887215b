"""kumo's diskformat part."""
