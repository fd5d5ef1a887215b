"""Projects, users, roles and role assignments: the rules, without HTTP.

Every function takes an open session and leaves committing to the caller, so a
request that fails half-way changes nothing. Names are unique in kumo's one
domain (`default`); the admin user and project kumo bootstraps are protected,
because without them nobody could manage kumo any more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kumo.db.base import Base
from kumo.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from kumo.identity.bootstrap import ADMIN_PROJECT, ADMIN_USER, DEFAULT_ROLES
from kumo.identity.models import Project, Role, RoleAssignment, User
from kumo.identity.passwords import hash_password, verify_password
from kumo.identity.tokens import IMPLIED_ROLES

M = TypeVar("M", bound=Base)


def _get(session: Session, model: type[M], kind: str, ident: str) -> M:
    found = session.get(model, ident)
    if found is None:
        raise NotFound(f"Could not find {kind}: {ident}.")
    return found


def _flush_unique(session: Session, kind: str, name: str) -> None:
    """Flush; a unique-name race with another request becomes the same 409."""
    try:
        session.flush()
    except IntegrityError:
        raise _duplicate(kind, name) from None


def _duplicate(kind: str, name: str) -> Conflict:
    return Conflict(
        f"Conflict occurred attempting to store {kind} - it is not permitted to have "
        f"two {kind}s with the same name in the same domain : {name}."
    )


def _name_taken(session: Session, model: type[Project] | type[User] | type[Role],
                name: str, own_id: str | None = None) -> bool:
    found = session.scalar(select(model.id).where(model.name == name))
    return found is not None and found != own_id


# ---- projects -------------------------------------------------------------------------


def get_project(session: Session, project_id: str) -> Project:
    """The project with this id, or NotFound."""
    return _get(session, Project, "project", project_id)


def create_project(session: Session, fields: dict[str, Any]) -> Project:
    """A new project in the default domain; 409 if the name is taken."""
    if _name_taken(session, Project, fields["name"]):
        raise _duplicate("project", fields["name"])
    project = Project(**fields)
    session.add(project)
    _flush_unique(session, "project", fields["name"])
    return project


def list_projects(session: Session, filters: dict[str, Any] | None = None) -> list[Project]:
    """Projects by name, filtered on name, enabled and Keystone's tag filters."""
    filters = filters or {}
    query = select(Project).order_by(Project.name)
    if "name" in filters:
        query = query.where(Project.name == filters["name"])
    if "enabled" in filters:
        query = query.where(Project.enabled == filters["enabled"])
    projects = list(session.scalars(query))
    return [p for p in projects if _tags_match(set(p.tags or ()), filters)]


def _tags_match(tags: set[str], filters: dict[str, Any]) -> bool:
    # Keystone: tags = all of, tags-any = any of, not-tags = not all of, not-tags-any = none of.
    if "tags" in filters and not set(filters["tags"]) <= tags:
        return False
    if "tags-any" in filters and not set(filters["tags-any"]) & tags:
        return False
    if "not-tags" in filters and set(filters["not-tags"]) <= tags:
        return False
    return not ("not-tags-any" in filters and set(filters["not-tags-any"]) & tags)


def update_project(session: Session, project_id: str, fields: dict[str, Any]) -> Project:
    """Change a project's name, description, enabled flag, tags or extra attributes."""
    project = get_project(session, project_id)
    if project.name == ADMIN_PROJECT and fields.get("enabled") is False:
        raise Forbidden(f"The project {ADMIN_PROJECT!r} kumo bootstraps cannot be disabled.")
    if project.name == ADMIN_PROJECT and fields.get("name", ADMIN_PROJECT) != ADMIN_PROJECT:
        raise Forbidden(f"The project {ADMIN_PROJECT!r} kumo bootstraps cannot be renamed.")
    if "name" in fields and _name_taken(session, Project, fields["name"], project.id):
        raise _duplicate("project", fields["name"])
    extra = fields.pop("extra", None)
    for key, value in fields.items():
        setattr(project, key, value)
    if extra:
        project.extra = {**(project.extra or {}), **extra}
    _flush_unique(session, "project", project.name)
    return project


def delete_project(session: Session, project_id: str) -> None:
    """Delete a project and every role assignment on it; users keep existing."""
    project = get_project(session, project_id)
    if project.name == ADMIN_PROJECT:
        raise Forbidden(f"The project {ADMIN_PROJECT!r} kumo bootstraps cannot be deleted.")
    # Explicit, not left to ON DELETE: the ORM session must not keep stale rows.
    session.execute(delete(RoleAssignment).where(RoleAssignment.project_id == project.id))
    session.execute(
        update(User).where(User.default_project_id == project.id).values(default_project_id=None)
    )
    session.delete(project)
    session.flush()


def user_projects(session: Session, user_id: str) -> list[Project]:
    """The enabled projects on which the user holds at least one role."""
    get_user(session, user_id)
    return list(
        session.scalars(
            select(Project)
            .where(
                Project.id.in_(
                    select(RoleAssignment.project_id).where(RoleAssignment.user_id == user_id)
                ),
                Project.enabled.is_(True),
            )
            .order_by(Project.name)
        )
    )


# ---- users ----------------------------------------------------------------------------


def get_user(session: Session, user_id: str) -> User:
    """The user with this id, or NotFound."""
    return _get(session, User, "user", user_id)


def _check_default_project(session: Session, fields: dict[str, Any]) -> None:
    project_id = fields.get("default_project_id")
    if project_id is not None and session.get(Project, project_id) is None:
        raise BadRequest(f"Invalid input for field 'default_project_id': no project {project_id}.")


def create_user(session: Session, fields: dict[str, Any]) -> User:
    """A new user; the password is stored as a scrypt hash (none: cannot log in)."""
    if _name_taken(session, User, fields["name"]):
        raise _duplicate("user", fields["name"])
    _check_default_project(session, fields)
    password = fields.pop("password", None)
    # An empty hash never verifies: a user created without a password cannot log in.
    user = User(**fields, password_hash=hash_password(password) if password else "")
    session.add(user)
    _flush_unique(session, "user", fields["name"])
    return user


def list_users(session: Session, filters: dict[str, Any] | None = None) -> list[User]:
    """Users by name, filtered on name and enabled."""
    filters = filters or {}
    query = select(User).order_by(User.name)
    if "name" in filters:
        query = query.where(User.name == filters["name"])
    if "enabled" in filters:
        query = query.where(User.enabled == filters["enabled"])
    return list(session.scalars(query))


def update_user(session: Session, user_id: str, fields: dict[str, Any]) -> User:
    """Change a user's attributes; a new password invalidates the user's older tokens."""
    user = get_user(session, user_id)
    if user.name == ADMIN_USER and fields.get("enabled") is False:
        raise Forbidden(f"The user {ADMIN_USER!r} kumo bootstraps cannot be disabled.")
    if user.name == ADMIN_USER and fields.get("name", ADMIN_USER) != ADMIN_USER:
        raise Forbidden(f"The user {ADMIN_USER!r} kumo bootstraps cannot be renamed.")
    if "name" in fields and _name_taken(session, User, fields["name"], user.id):
        raise _duplicate("user", fields["name"])
    _check_default_project(session, fields)
    password = fields.pop("password", None)
    extra = fields.pop("extra", None)
    for key, value in fields.items():
        setattr(user, key, value)
    if extra:
        user.extra = {**(user.extra or {}), **extra}
    if password is not None:
        _set_password(user, password)
    _flush_unique(session, "user", user.name)
    return user


def _set_password(user: User, password: str) -> None:
    user.password_hash = hash_password(password)
    # Full precision (not utcnow's seconds): tokens carry sub-second issue times.
    user.password_changed_at = datetime.now(UTC)


def change_password(session: Session, user_id: str, original: str, password: str) -> None:
    """A user changing their own password must prove they know the current one."""
    user = get_user(session, user_id)
    if not verify_password(original, user.password_hash):
        raise Unauthorized("The original password is not correct.")
    _set_password(user, password)
    session.flush()


def delete_user(session: Session, user_id: str) -> None:
    """Delete a user and their role assignments; their tokens stop working at once."""
    user = get_user(session, user_id)
    if user.name == ADMIN_USER:
        raise Forbidden(f"The user {ADMIN_USER!r} kumo bootstraps cannot be deleted.")
    session.execute(delete(RoleAssignment).where(RoleAssignment.user_id == user.id))
    session.delete(user)
    session.flush()


# ---- roles ----------------------------------------------------------------------------


def get_role(session: Session, role_id: str) -> Role:
    """The role with this id, or NotFound."""
    return _get(session, Role, "role", role_id)


def list_roles(session: Session, name: str | None = None) -> list[Role]:
    """Every role (admin, member, reader and any the admin made), by name."""
    query = select(Role).order_by(Role.name)
    if name is not None:
        query = query.where(Role.name == name)
    return list(session.scalars(query))


def create_role(session: Session, fields: dict[str, Any]) -> Role:
    """A new global role; 409 if the name is taken."""
    if _name_taken(session, Role, fields["name"]):
        raise _duplicate("role", fields["name"])
    role = Role(**fields)
    session.add(role)
    _flush_unique(session, "role", fields["name"])
    return role


def delete_role(session: Session, role_id: str) -> None:
    """Delete a role made by the admin, and every assignment of it."""
    role = get_role(session, role_id)
    if role.name in DEFAULT_ROLES:
        raise Forbidden(f"The role {role.name!r} is built into kumo and cannot be deleted.")
    session.execute(delete(RoleAssignment).where(RoleAssignment.role_id == role.id))
    session.delete(role)
    session.flush()


# ---- role assignments -----------------------------------------------------------------


def _assignment(session: Session, project_id: str, user_id: str, role_id: str
                ) -> RoleAssignment | None:
    return session.scalar(
        select(RoleAssignment).where(
            RoleAssignment.project_id == project_id,
            RoleAssignment.user_id == user_id,
            RoleAssignment.role_id == role_id,
        )
    )


def _check_parties(session: Session, project_id: str, user_id: str, role_id: str) -> None:
    get_project(session, project_id)
    get_user(session, user_id)
    get_role(session, role_id)


def grant_role(session: Session, project_id: str, user_id: str, role_id: str) -> None:
    """Give a user a role on a project (granting it again changes nothing)."""
    _check_parties(session, project_id, user_id, role_id)
    if _assignment(session, project_id, user_id, role_id) is None:
        session.add(RoleAssignment(project_id=project_id, user_id=user_id, role_id=role_id))
        session.flush()


def has_role(session: Session, project_id: str, user_id: str, role_id: str) -> bool:
    """Whether the user holds exactly this role (not implied) on the project."""
    _check_parties(session, project_id, user_id, role_id)
    return _assignment(session, project_id, user_id, role_id) is not None


def revoke_role(session: Session, project_id: str, user_id: str, role_id: str) -> None:
    """Take a role away; NotFound if the user does not hold it on the project."""
    _check_parties(session, project_id, user_id, role_id)
    found = _assignment(session, project_id, user_id, role_id)
    if found is None:
        raise NotFound(f"Could not find role assignment: role {role_id} of user {user_id} "
                       f"on project {project_id}.")
    if _is_last_admin_grant(session, found):
        raise Forbidden(
            f"The admin role of user {ADMIN_USER!r} on project {ADMIN_PROJECT!r} cannot be removed."
        )
    session.delete(found)
    session.flush()


def _is_last_admin_grant(session: Session, found: RoleAssignment) -> bool:
    user = session.get(User, found.user_id)
    project = session.get(Project, found.project_id)
    role = session.get(Role, found.role_id)
    return (user is not None and user.name == ADMIN_USER and project is not None
            and project.name == ADMIN_PROJECT and role is not None and role.name == "admin")


def project_user_roles(session: Session, project_id: str, user_id: str) -> list[Role]:
    """The roles granted (not implied) to a user on a project."""
    get_project(session, project_id)
    get_user(session, user_id)
    return list(
        session.scalars(
            select(Role)
            .join(RoleAssignment, RoleAssignment.role_id == Role.id)
            .where(RoleAssignment.project_id == project_id, RoleAssignment.user_id == user_id)
            .order_by(Role.name)
        )
    )


@dataclass(frozen=True)
class Assignment:
    """One row of `GET /v3/role_assignments`."""

    user: User
    project: Project
    role: Role
    prior_role: Role | None = None  # set when the role is implied by this one (effective)


def list_assignments(
    session: Session,
    *,
    user_id: str | None = None,
    project_id: str | None = None,
    role_id: str | None = None,
    effective: bool = False,
) -> list[Assignment]:
    """Role assignments filtered like Keystone's; `effective` adds implied roles."""
    query = (
        select(RoleAssignment, User, Project, Role)
        .join(User, User.id == RoleAssignment.user_id)
        .join(Project, Project.id == RoleAssignment.project_id)
        .join(Role, Role.id == RoleAssignment.role_id)
        .order_by(Project.name, User.name, Role.name)
    )
    if user_id is not None:
        query = query.where(RoleAssignment.user_id == user_id)
    if project_id is not None:
        query = query.where(RoleAssignment.project_id == project_id)
    rows = [Assignment(user, project, role) for _, user, project, role in session.execute(query)]
    if effective:
        rows = _with_implied(session, rows)
    if role_id is not None:
        rows = [row for row in rows if row.role.id == role_id]
    return rows


def _with_implied(session: Session, rows: Iterable[Assignment]) -> list[Assignment]:
    by_name = {role.name: role for role in session.scalars(select(Role))}
    result: list[Assignment] = []
    seen: set[tuple[str, str, str]] = set()
    for row in rows:
        pending: list[tuple[Role, Role | None]] = [(row.role, None)]
        while pending:
            role, prior = pending.pop(0)
            key = (row.user.id, row.project.id, role.id)
            if key in seen:
                continue
            seen.add(key)
            result.append(Assignment(row.user, row.project, role, prior))
            pending.extend(
                (by_name[name], role) for name in IMPLIED_ROLES.get(role.name, ())
                if name in by_name
            )
    return result
