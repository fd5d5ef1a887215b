"""Conformance: run OpenStack tempest against a fresh kumo (`make conformance`)."""
