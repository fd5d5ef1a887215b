"""Keystone v3 JSON for domains, projects, users, groups, roles and role assignments."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from kumo.identity.grants import Assignment
from kumo.identity.models import Domain, Group, Project, Role, User

DEFAULT_DOMAIN_ID = "default"
DEFAULT_DOMAIN_NAME = "Default"
DOMAIN_REF = {"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME}


def domain_view(domain: Domain, v3: str) -> dict[str, Any]:
    return {
        **(domain.extra or {}),
        "id": domain.id,
        "name": domain.name,
        "description": domain.description,
        "enabled": domain.enabled,
        "tags": list(domain.tags or ()),
        "options": {},
        "links": {"self": f"{v3}/domains/{domain.id}"},
    }


def domain_as_project_view(domain: Domain, v3: str) -> dict[str, Any]:
    """A domain seen through the projects API (Keystone's is_domain projects)."""
    return {
        **(domain.extra or {}),
        "id": domain.id,
        "name": domain.name,
        "description": domain.description,
        "enabled": domain.enabled,
        "domain_id": None,
        "parent_id": None,
        "is_domain": True,
        "tags": list(domain.tags or ()),
        "options": {},
        "links": {"self": f"{v3}/projects/{domain.id}"},
    }


def domain_ref(session: Session, domain_id: str) -> dict[str, Any]:
    """`{"id": …, "name": …}` as tokens and assignment names show a domain."""
    domain = session.get(Domain, domain_id)
    return {"id": domain_id, "name": domain.name if domain else domain_id}


def project_view(project: Project, v3: str) -> dict[str, Any]:
    return {
        **(project.extra or {}),
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "enabled": project.enabled,
        "domain_id": project.domain_id,
        # Top-level projects have their domain as parent in Keystone.
        "parent_id": project.parent_id or project.domain_id,
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
        "domain_id": user.domain_id,
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


def group_view(group: Group, v3: str) -> dict[str, Any]:
    return {
        **(group.extra or {}),
        "id": group.id,
        "name": group.name,
        "domain_id": group.domain_id,
        "description": group.description,
        "links": {"self": f"{v3}/groups/{group.id}"},
    }


def assignment_view(session: Session, row: Assignment, v3: str, *, names: bool
                    ) -> dict[str, Any]:
    granted = row.prior_role or row.role
    view: dict[str, Any] = {"role": {"id": row.role.id}}
    if names:
        view["role"]["name"] = row.role.name
    actor_path = ""
    group = row.via_group or row.group
    if row.user is not None and row.via_group is None:
        view["user"] = {"id": row.user.id}
        if names:
            view["user"].update(name=row.user.name, domain=domain_ref(session, row.user.domain_id))
        actor_path = f"users/{row.user.id}"
    if row.user is not None and row.via_group is not None:
        view["user"] = {"id": row.user.id}
        if names:
            view["user"].update(name=row.user.name, domain=domain_ref(session, row.user.domain_id))
    if group is not None:
        actor_path = f"groups/{group.id}"
        if row.via_group is None:
            view["group"] = {"id": group.id}
            if names:
                view["group"].update(name=group.name, domain=domain_ref(session, group.domain_id))
    if row.project is not None:
        scope: dict[str, Any] = {"id": row.project.id}
        if names:
            scope.update(name=row.project.name, domain=domain_ref(session, row.project.domain_id))
        view["scope"] = {"project": scope}
        target = f"projects/{row.project.id}"
    elif row.domain is not None:
        scope = {"id": row.domain.id}
        if names:
            scope["name"] = row.domain.name
        view["scope"] = {"domain": scope}
        target = f"domains/{row.domain.id}"
    else:
        view["scope"] = {"system": {"all": True}}
        target = "system"
    links = {"assignment": f"{v3}/{target}/{actor_path}/roles/{granted.id}"}
    if row.via_group is not None and row.user is not None:
        links["membership"] = f"{v3}/groups/{row.via_group.id}/users/{row.user.id}"
    if row.prior_role is not None:
        links["prior_role"] = f"{v3}/roles/{row.prior_role.id}"
    view["links"] = links
    return view


def collection(key: str, items: list[dict[str, Any]], self_url: str) -> dict[str, Any]:
    return {key: items, "links": {"self": self_url, "previous": None, "next": None}}
