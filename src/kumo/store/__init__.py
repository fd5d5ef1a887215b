"""Image bytes: one small interface, a filesystem backend by default."""
