"""Projects, users and roles: the rules, without HTTP.

Every function takes an open session and leaves committing to the caller, so a
request that fails half-way changes nothing. Project and user names are unique in
their domain, role names globally; the admin user and project kumo bootstraps are
protected, because without them nobody could manage kumo any more.
Role assignments live in `kumo.identity.grants`, domains in `kumo.identity.domains`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kumo.db.base import Base
from kumo.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from kumo.identity.bootstrap import ADMIN_PROJECT, ADMIN_USER, DEFAULT_ROLES
from kumo.identity.domains import DEFAULT_DOMAIN_ID, domain_for_new
from kumo.identity.models import (
    ApplicationCredential,
    Credential,
    Domain,
    GroupMember,
    Project,
    Role,
    RoleAssignment,
    User,
)
from kumo.identity.passwords import hash_password, verify_password
from kumo.identity.tokens import group_ids_of

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
                name: str, own_id: str | None = None, domain_id: str | None = None) -> bool:
    query = select(model.id).where(model.name == name)
    if domain_id is not None and model is not Role:
        query = query.where(model.domain_id == domain_id)  # type: ignore[union-attr]
    found = session.scalar(query)
    return found is not None and found != own_id


# ---- projects -------------------------------------------------------------------------


def get_project(session: Session, project_id: str) -> Project:
    """The project with this id, or NotFound."""
    return _get(session, Project, "project", project_id)


def create_project(session: Session, fields: dict[str, Any]) -> Project:
    """A new project in its domain (default), under `parent_id` if given; 409 on a taken name."""
    fields = dict(fields)
    parent_id = fields.pop("parent_id", None)
    domain = domain_for_new(session, fields.pop("domain_id", None))
    if parent_id is not None and parent_id != domain.id:
        parent = session.get(Project, parent_id)
        if parent is None:
            if session.get(Domain, parent_id) is None:
                raise NotFound(f"Could not find project: {parent_id}.")
            raise BadRequest("Invalid input: parent_id names another domain than domain_id.")
        if domain.id != parent.domain_id:
            if domain.id != DEFAULT_DOMAIN_ID:
                raise BadRequest("Invalid input: the parent project is in another domain.")
            domain = domain_for_new(session, parent.domain_id)
        fields["parent_id"] = parent.id
    fields["domain_id"] = domain.id
    if _name_taken(session, Project, fields["name"], domain_id=domain.id):
        raise _duplicate("project", fields["name"])
    project = Project(**fields)
    session.add(project)
    _flush_unique(session, "project", fields["name"])
    return project


def list_projects(session: Session, filters: dict[str, Any] | None = None) -> list[Project]:
    """Projects by name, filtered on name, enabled, domain, parent and Keystone's tag filters."""
    filters = filters or {}
    query = select(Project).order_by(Project.name)
    if "name" in filters:
        query = query.where(Project.name == filters["name"])
    if "enabled" in filters:
        query = query.where(Project.enabled == filters["enabled"])
    if "domain_id" in filters:
        query = query.where(Project.domain_id == filters["domain_id"])
    if "parent_id" in filters:
        parent = filters["parent_id"]
        query = query.where((Project.parent_id == parent)
                            | (Project.parent_id.is_(None) & (Project.domain_id == parent)))
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
    if "name" in fields and _name_taken(session, Project, fields["name"], project.id,
                                        project.domain_id):
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
    if project.name == ADMIN_PROJECT and project.domain_id == DEFAULT_DOMAIN_ID:
        raise Forbidden(f"The project {ADMIN_PROJECT!r} kumo bootstraps cannot be deleted.")
    if session.scalar(select(Project.id).where(Project.parent_id == project.id).limit(1)):
        raise Forbidden(f"Cannot delete the project {project.id}: it is not a leaf in the "
                        "project hierarchy (delete its subprojects first).")
    # Explicit, not left to ON DELETE: the ORM session must not keep stale rows.
    session.execute(delete(RoleAssignment).where(RoleAssignment.project_id == project.id))
    session.execute(delete(ApplicationCredential).where(
        ApplicationCredential.project_id == project.id))
    session.execute(
        update(User).where(User.default_project_id == project.id).values(default_project_id=None)
    )
    session.delete(project)
    session.flush()


def user_projects(session: Session, user_id: str) -> list[Project]:
    """The enabled projects on which the user holds at least one role."""
    get_user(session, user_id)
    actor = RoleAssignment.user_id == user_id
    groups = group_ids_of(session, user_id)
    if groups:
        actor = actor | RoleAssignment.group_id.in_(groups)
    return list(
        session.scalars(
            select(Project)
            .where(
                Project.id.in_(select(RoleAssignment.project_id).where(actor)),
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
    """A new user in its domain; the password is stored as a scrypt hash (none: no login)."""
    fields = dict(fields)
    fields["domain_id"] = domain_for_new(session, fields.get("domain_id")).id
    if _name_taken(session, User, fields["name"], domain_id=fields["domain_id"]):
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
    if "domain_id" in filters:
        query = query.where(User.domain_id == filters["domain_id"])
    return list(session.scalars(query))


def update_user(session: Session, user_id: str, fields: dict[str, Any]) -> User:
    """Change a user's attributes; a new password invalidates the user's older tokens."""
    user = get_user(session, user_id)
    if user.name == ADMIN_USER and fields.get("enabled") is False:
        raise Forbidden(f"The user {ADMIN_USER!r} kumo bootstraps cannot be disabled.")
    if user.name == ADMIN_USER and fields.get("name", ADMIN_USER) != ADMIN_USER:
        raise Forbidden(f"The user {ADMIN_USER!r} kumo bootstraps cannot be renamed.")
    if "name" in fields and _name_taken(session, User, fields["name"], user.id, user.domain_id):
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
    session.execute(delete(GroupMember).where(GroupMember.user_id == user.id))
    session.execute(delete(ApplicationCredential).where(ApplicationCredential.user_id == user.id))
    session.execute(delete(Credential).where(Credential.user_id == user.id))
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


def update_role(session: Session, role_id: str, fields: dict[str, Any]) -> Role:
    """Rename a role or change its description (the built-in three keep their names)."""
    role = get_role(session, role_id)
    if role.name in DEFAULT_ROLES and fields.get("name", role.name) != role.name:
        raise Forbidden(f"The role {role.name!r} is built into kumo and cannot be renamed.")
    if "name" in fields and _name_taken(session, Role, fields["name"], role.id):
        raise _duplicate("role", fields["name"])
    for key, value in fields.items():
        setattr(role, key, value)
    _flush_unique(session, "role", role.name)
    return role


def delete_role(session: Session, role_id: str) -> None:
    """Delete a role made by the admin, and every assignment of it."""
    role = get_role(session, role_id)
    if role.name in DEFAULT_ROLES:
        raise Forbidden(f"The role {role.name!r} is built into kumo and cannot be deleted.")
    session.execute(delete(RoleAssignment).where(RoleAssignment.role_id == role.id))
    session.delete(role)
    session.flush()
