"""First start: the Default domain, the default roles, the admin project and the admin user."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.identity.models import ImpliedRole, Project, Role, RoleAssignment, User
from kumo.identity.passwords import hash_password, needs_rehash, verify_password

DEFAULT_ROLES = ("admin", "member", "reader")
ADMIN_USER = "admin"
ADMIN_PROJECT = "admin"


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def bootstrap(session: Session, admin_password: str) -> User:
    """Make sure the roles, project `admin` and user `admin` exist (idempotent).

    The admin user's password is set to `admin_password` if it differs, so the
    password kumo prints is always the one that works.
    """
    from kumo.identity.domains import ensure_default
    from kumo.identity.tokens import DEFAULT_IMPLIED_ROLES, SYSTEM_ALL

    ensure_default(session)
    roles = {}
    for name in DEFAULT_ROLES:
        role = session.scalar(select(Role).where(Role.name == name))
        if role is None:
            role = Role(name=name)
            session.add(role)
        roles[name] = role
    session.flush()
    if session.scalar(select(ImpliedRole).limit(1)) is None:  # none stored: the defaults
        for prior, implied in DEFAULT_IMPLIED_ROLES.items():
            for name in implied:
                session.add(ImpliedRole(prior_role_id=roles[prior].id,
                                        implied_role_id=roles[name].id))
    project = session.scalar(select(Project).where(Project.name == ADMIN_PROJECT,
                                                   Project.domain_id == "default"))
    if project is None:
        project = Project(name=ADMIN_PROJECT, description="Bootstrap project for kumo's admin")
        session.add(project)
    user = session.scalar(select(User).where(User.name == ADMIN_USER,
                                             User.domain_id == "default"))
    if user is None:
        user = User(name=ADMIN_USER, password_hash=hash_password(admin_password))
        session.add(user)
    elif needs_rehash(user.password_hash) or not verify_password(admin_password,
                                                                 user.password_hash):
        user.password_hash = hash_password(admin_password)
    session.flush()
    user.default_project_id = project.id
    exists = session.scalar(
        select(RoleAssignment).where(
            RoleAssignment.user_id == user.id,
            RoleAssignment.project_id == project.id,
            RoleAssignment.role_id == roles["admin"].id,
        )
    )
    if exists is None:
        session.add(
            RoleAssignment(user_id=user.id, project_id=project.id, role_id=roles["admin"].id)
        )
    # As keystone-manage bootstrap does: the admin also holds admin on the system.
    on_system = session.scalar(select(RoleAssignment).where(
        RoleAssignment.user_id == user.id, RoleAssignment.system == SYSTEM_ALL,
        RoleAssignment.role_id == roles["admin"].id))
    if on_system is None:
        session.add(RoleAssignment(user_id=user.id, system=SYSTEM_ALL, role_id=roles["admin"].id))
    session.flush()
    return user
