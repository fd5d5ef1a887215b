"""Keystone v3 projects, users, roles and role assignments (to be written)."""

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    return []
