"""Role assignments: a user or a group holds a role on a project, a domain or the system.

Keystone's `/v3/projects/{p}/users/{u}/roles/{r}` and its siblings for groups, domains
and the system all land here; `list_assignments` is `GET /v3/role_assignments`, with
`effective` expanding group assignments into their members and adding implied roles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.errors import Forbidden, NotFound
from kumo.identity.bootstrap import ADMIN_PROJECT, ADMIN_USER
from kumo.identity.domains import get_domain
from kumo.identity.models import Domain, Group, GroupMember, Project, Role, RoleAssignment, User
from kumo.identity.tokens import SYSTEM_ALL, implications


@dataclass(frozen=True)
class Actor:
    user_id: str | None = None
    group_id: str | None = None

    def describe(self) -> str:
        return f"user {self.user_id}" if self.user_id else f"group {self.group_id}"


@dataclass(frozen=True)
class Target:
    project_id: str | None = None
    domain_id: str | None = None
    system: bool = False

    def describe(self) -> str:
        if self.project_id:
            return f"project {self.project_id}"
        return f"domain {self.domain_id}" if self.domain_id else "the system"


def _where(actor: Actor, target: Target) -> list[Any]:
    return [
        RoleAssignment.user_id.is_(None) if actor.user_id is None
        else RoleAssignment.user_id == actor.user_id,
        RoleAssignment.group_id.is_(None) if actor.group_id is None
        else RoleAssignment.group_id == actor.group_id,
        RoleAssignment.project_id.is_(None) if target.project_id is None
        else RoleAssignment.project_id == target.project_id,
        RoleAssignment.domain_id.is_(None) if target.domain_id is None
        else RoleAssignment.domain_id == target.domain_id,
        RoleAssignment.system.is_(None) if not target.system
        else RoleAssignment.system == SYSTEM_ALL,
    ]


def _check_parties(session: Session, actor: Actor, target: Target, role_id: str | None) -> None:
    if actor.user_id is not None and session.get(User, actor.user_id) is None:
        raise NotFound(f"Could not find user: {actor.user_id}.")
    if actor.group_id is not None and session.get(Group, actor.group_id) is None:
        raise NotFound(f"Could not find group: {actor.group_id}.")
    if target.project_id is not None and session.get(Project, target.project_id) is None:
        raise NotFound(f"Could not find project: {target.project_id}.")
    if target.domain_id is not None:
        get_domain(session, target.domain_id)
    if role_id is not None and session.get(Role, role_id) is None:
        raise NotFound(f"Could not find role: {role_id}.")


def _find(session: Session, actor: Actor, target: Target, role_id: str) -> RoleAssignment | None:
    return session.scalar(select(RoleAssignment).where(
        *_where(actor, target), RoleAssignment.role_id == role_id))


def grant(session: Session, actor: Actor, target: Target, role_id: str) -> None:
    """Give the actor a role on the target (granting it again changes nothing)."""
    _check_parties(session, actor, target, role_id)
    if _find(session, actor, target, role_id) is None:
        session.add(RoleAssignment(
            user_id=actor.user_id, group_id=actor.group_id, project_id=target.project_id,
            domain_id=target.domain_id, system=SYSTEM_ALL if target.system else None,
            role_id=role_id))
        session.flush()


def has_role(session: Session, actor: Actor, target: Target, role_id: str) -> bool:
    """Whether the actor holds exactly this role (not implied) on the target."""
    _check_parties(session, actor, target, role_id)
    return _find(session, actor, target, role_id) is not None


def revoke(session: Session, actor: Actor, target: Target, role_id: str) -> None:
    """Take a role away; NotFound if the actor does not hold it there."""
    _check_parties(session, actor, target, role_id)
    found = _find(session, actor, target, role_id)
    if found is None:
        raise NotFound(f"Could not find role assignment: role {role_id} of "
                       f"{actor.describe()} on {target.describe()}.")
    if _is_last_admin_grant(session, found):
        raise Forbidden(
            f"The admin role of user {ADMIN_USER!r} on project {ADMIN_PROJECT!r} cannot be removed."
        )
    session.delete(found)
    session.flush()


def _is_last_admin_grant(session: Session, found: RoleAssignment) -> bool:
    if found.user_id is None or found.project_id is None:
        return False
    user = session.get(User, found.user_id)
    project = session.get(Project, found.project_id)
    role = session.get(Role, found.role_id)
    return (user is not None and user.name == ADMIN_USER and user.domain_id == "default"
            and project is not None and project.name == ADMIN_PROJECT
            and project.domain_id == "default" and role is not None and role.name == "admin")


def roles_of(session: Session, actor: Actor, target: Target) -> list[Role]:
    """The roles granted (not implied) to the actor on the target."""
    _check_parties(session, actor, target, None)
    return list(session.scalars(
        select(Role).join(RoleAssignment, RoleAssignment.role_id == Role.id)
        .where(*_where(actor, target)).order_by(Role.name)))


@dataclass(frozen=True)
class Assignment:
    """One row of `GET /v3/role_assignments`."""

    role: Role
    user: User | None = None
    group: Group | None = None
    project: Project | None = None
    domain: Domain | None = None
    system: bool = False
    prior_role: Role | None = None  # set when the role is implied by this one (effective)
    via_group: Group | None = None  # set when a group assignment was expanded (effective)


@dataclass(frozen=True)
class AssignmentFilter:
    user_id: str | None = None
    group_id: str | None = None
    project_id: str | None = None
    domain_id: str | None = None
    system: bool = False
    role_id: str | None = None
    effective: bool = False


def list_assignments(session: Session, wanted: AssignmentFilter) -> list[Assignment]:
    """Role assignments filtered like Keystone's; `effective` expands groups and implied roles."""
    query = select(RoleAssignment)
    if wanted.project_id is not None:
        query = query.where(RoleAssignment.project_id == wanted.project_id)
    if wanted.domain_id is not None:
        query = query.where(RoleAssignment.domain_id == wanted.domain_id)
    if wanted.system:
        query = query.where(RoleAssignment.system == SYSTEM_ALL)
    rows = [_row(session, a) for a in session.scalars(query.order_by(RoleAssignment.id))]
    if wanted.effective:
        rows = _expand_groups(session, rows)
    if wanted.user_id is not None:
        rows = [r for r in rows if r.user is not None and r.user.id == wanted.user_id]
    if wanted.group_id is not None:
        rows = [r for r in rows if r.group is not None and r.group.id == wanted.group_id]
    if wanted.effective:
        rows = _with_implied(session, rows)
    if wanted.role_id is not None:
        rows = [r for r in rows if r.role.id == wanted.role_id]
    return rows


def _row(session: Session, a: RoleAssignment) -> Assignment:
    role = session.get(Role, a.role_id)
    assert role is not None
    return Assignment(
        role=role,
        user=session.get(User, a.user_id) if a.user_id else None,
        group=session.get(Group, a.group_id) if a.group_id else None,
        project=session.get(Project, a.project_id) if a.project_id else None,
        domain=session.get(Domain, a.domain_id) if a.domain_id else None,
        system=a.system == SYSTEM_ALL,
    )


def _expand_groups(session: Session, rows: list[Assignment]) -> list[Assignment]:
    result: list[Assignment] = []
    for row in rows:
        if row.group is None:
            result.append(row)
            continue
        members = session.scalars(select(User).join(
            GroupMember, GroupMember.user_id == User.id).where(
            GroupMember.group_id == row.group.id).order_by(User.name))
        result.extend(Assignment(role=row.role, user=user, project=row.project,
                                 domain=row.domain, system=row.system, via_group=row.group)
                      for user in members)
    return result


def _with_implied(session: Session, rows: list[Assignment]) -> list[Assignment]:
    by_name = {role.name: role for role in session.scalars(select(Role))}
    rules = implications(session)
    result: list[Assignment] = []
    seen: set[tuple[str | None, ...]] = set()
    for row in rows:
        pending: list[tuple[Role, Role | None]] = [(row.role, None)]
        while pending:
            role, prior = pending.pop(0)
            key = (row.user.id if row.user else None, row.group.id if row.group else None,
                   row.project.id if row.project else None,
                   row.domain.id if row.domain else None, str(row.system), role.id)
            if key in seen:
                continue
            seen.add(key)
            result.append(Assignment(role=role, user=row.user, group=row.group,
                                     project=row.project, domain=row.domain, system=row.system,
                                     prior_role=prior, via_group=row.via_group))
            pending.extend(
                (by_name[name], role) for name in rules.get(role.name, ())
                if name in by_name
            )
    return result
