"""Keystone v3 JSON for projects, users, roles, domains and role assignments."""

from __future__ import annotations

from typing import Any

from kumo.identity.models import Project, Role, User
from kumo.identity.service import Assignment

DEFAULT_DOMAIN_ID = "default"
DEFAULT_DOMAIN_NAME = "Default"
DOMAIN_REF = {"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME}


def domain_view(v3: str) -> dict[str, Any]:
    return {
        "id": DEFAULT_DOMAIN_ID,
        "name": DEFAULT_DOMAIN_NAME,
        "description": "The default domain",
        "enabled": True,
        "tags": [],
        "options": {},
        "links": {"self": f"{v3}/domains/{DEFAULT_DOMAIN_ID}"},
    }


def project_view(project: Project, v3: str) -> dict[str, Any]:
    return {
        **(project.extra or {}),
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "enabled": project.enabled,
        "domain_id": DEFAULT_DOMAIN_ID,
        # Top-level projects have their domain as parent in Keystone.
        "parent_id": DEFAULT_DOMAIN_ID,
        "is_domain": False,
        "tags": list(project.tags or ()),
        "options": {},
        "links": {"self": f"{v3}/projects/{project.id}"},
    }


def user_view(user: User, v3: str) -> dict[str, Any]:
    view: dict[str, Any] = {
        **(user.extra or {}),
        "id": user.id,
        "name": user.name,
        "domain_id": DEFAULT_DOMAIN_ID,
        "enabled": user.enabled,
        "password_expires_at": None,
        "options": {},
        "links": {"self": f"{v3}/users/{user.id}"},
    }
    # Keystone shows these only when set (they live in its `extra`).
    if user.default_project_id:
        view["default_project_id"] = user.default_project_id
    if user.description:
        view["description"] = user.description
    if user.email:
        view["email"] = user.email
    return view


def role_view(role: Role, v3: str) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": role.id,
        "name": role.name,
        "domain_id": None,
        "options": {},
        "links": {"self": f"{v3}/roles/{role.id}"},
    }
    if role.description:
        view["description"] = role.description
    return view


def assignment_view(row: Assignment, v3: str, *, names: bool) -> dict[str, Any]:
    role: dict[str, Any] = {"id": row.role.id}
    user: dict[str, Any] = {"id": row.user.id}
    project: dict[str, Any] = {"id": row.project.id}
    if names:
        role["name"] = row.role.name
        user.update(name=row.user.name, domain=DOMAIN_REF)
        project.update(name=row.project.name, domain=DOMAIN_REF)
    granted = row.prior_role or row.role
    links = {
        "assignment": f"{v3}/projects/{row.project.id}/users/{row.user.id}/roles/{granted.id}"
    }
    if row.prior_role is not None:
        links["prior_role"] = f"{v3}/roles/{row.prior_role.id}"
    return {"role": role, "user": user, "scope": {"project": project}, "links": links}


def collection(key: str, items: list[dict[str, Any]], self_url: str) -> dict[str, Any]:
    return {key: items, "links": {"self": self_url, "previous": None, "next": None}}
