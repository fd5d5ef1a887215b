"""Pytest fixtures for guest images (built once, cached under ~/.cache/kumo)."""
