"""Domains: create, list, change, delete (with everything in them), as Keystone's rules say.

`default` (Default) is the domain kumo starts with; it holds the bootstrap admin and
cannot be deleted or disabled. A domain must be disabled before it is deleted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kumo.errors import Conflict, Forbidden, NotFound
from kumo.identity.models import (
    ApplicationCredential,
    Credential,
    Domain,
    Group,
    GroupMember,
    Project,
    RoleAssignment,
    User,
)

DEFAULT_DOMAIN_ID = "default"
DEFAULT_DOMAIN_NAME = "Default"


def ensure_default(session: Session) -> Domain:
    """The Default domain, created on first start."""
    domain = session.get(Domain, DEFAULT_DOMAIN_ID)
    if domain is None:
        domain = Domain(id=DEFAULT_DOMAIN_ID, name=DEFAULT_DOMAIN_NAME,
                        description="The default domain")
        session.add(domain)
        session.flush()
    return domain


def get_domain(session: Session, domain_id: str) -> Domain:
    """The domain with this id, or NotFound (Keystone's 404)."""
    domain = session.get(Domain, domain_id)
    if domain is None:
        raise NotFound(f"Could not find domain: {domain_id}.")
    return domain


def domain_for_new(session: Session, domain_id: str | None) -> Domain:
    """The domain a new project, user or group goes into (default when none is named)."""
    domain_id = domain_id or DEFAULT_DOMAIN_ID
    domain = session.get(Domain, domain_id)
    if domain is None:
        raise NotFound(f"Could not find domain: {domain_id}.")
    return domain


def list_domains(session: Session, filters: dict[str, Any]) -> list[Domain]:
    query = select(Domain).order_by(Domain.name)
    if "name" in filters:
        query = query.where(Domain.name == filters["name"])
    if "enabled" in filters:
        query = query.where(Domain.enabled == filters["enabled"])
    return list(session.scalars(query))


def create_domain(session: Session, fields: dict[str, Any]) -> Domain:
    if session.scalar(select(Domain.id).where(Domain.name == fields["name"])) is not None:
        raise _duplicate(fields["name"])
    domain = Domain(**fields)
    session.add(domain)
    _flush(session, fields["name"])
    return domain


def update_domain(session: Session, domain_id: str, fields: dict[str, Any]) -> Domain:
    domain = get_domain(session, domain_id)
    if domain.id == DEFAULT_DOMAIN_ID and fields.get("enabled") is False:
        raise Forbidden("The Default domain holds kumo's admin and cannot be disabled.")
    if "name" in fields:
        taken = session.scalar(select(Domain.id).where(Domain.name == fields["name"]))
        if taken not in (None, domain.id):
            raise _duplicate(fields["name"])
    extra = fields.pop("extra", None)
    for key, value in fields.items():
        setattr(domain, key, value)
    if extra:
        domain.extra = {**(domain.extra or {}), **extra}
    _flush(session, domain.name)
    return domain


def delete_domain(session: Session, domain_id: str) -> None:
    """Delete a disabled domain with its projects, users, groups and their assignments."""
    domain = get_domain(session, domain_id)
    if domain.id == DEFAULT_DOMAIN_ID:
        raise Forbidden("The Default domain holds kumo's admin and cannot be deleted.")
    if domain.enabled:
        raise Forbidden(f"Cannot delete a domain that is enabled, please disable it first: "
                        f"{domain.id}.")
    projects = select(Project.id).where(Project.domain_id == domain.id)
    users = select(User.id).where(User.domain_id == domain.id)
    groups = select(Group.id).where(Group.domain_id == domain.id)
    session.execute(delete(RoleAssignment).where(
        RoleAssignment.project_id.in_(projects) | RoleAssignment.user_id.in_(users)
        | RoleAssignment.group_id.in_(groups) | (RoleAssignment.domain_id == domain.id)))
    session.execute(delete(GroupMember).where(
        GroupMember.group_id.in_(groups) | GroupMember.user_id.in_(users)))
    session.execute(delete(ApplicationCredential).where(
        ApplicationCredential.user_id.in_(users) | ApplicationCredential.project_id.in_(projects)))
    session.execute(delete(Credential).where(Credential.user_id.in_(users)))
    session.execute(delete(User).where(User.domain_id == domain.id))
    session.execute(delete(Group).where(Group.domain_id == domain.id))
    session.execute(delete(Project).where(Project.domain_id == domain.id))
    session.delete(domain)
    session.flush()
    session.expire_all()


def _duplicate(name: str) -> Conflict:
    return Conflict(f"Conflict occurred attempting to store domain - Duplicate entry "
                    f"found with name {name}.")


def _flush(session: Session, name: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise _duplicate(name) from None

