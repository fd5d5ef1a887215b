"""kumo's imagebuild part."""
