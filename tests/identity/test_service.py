"""The identity rules called directly: names, cascades, protection, assignments."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kumo.db.engine import session_scope
from kumo.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from kumo.identity import grants, service
from kumo.identity.grants import Actor, AssignmentFilter, Target
from kumo.identity.models import Project, Role, RoleAssignment, User
from kumo.identity.passwords import verify_password
from kumo.identity.tokens import context_for, issue
from kumo.runtime import Runtime


@pytest.fixture
def session(runtime: Runtime) -> Iterator[Session]:
    with session_scope(runtime.sessions) as session:
        yield session


def role(session: Session, name: str) -> Role:
    found = service.list_roles(session, name)
    assert len(found) == 1
    return found[0]


def assignments(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(RoleAssignment)) or 0


def test_project_names_are_unique(session: Session) -> None:
    service.create_project(session, {"name": "p1"})
    with pytest.raises(Conflict, match="p1"):
        service.create_project(session, {"name": "p1"})
    other = service.create_project(session, {"name": "p2"})
    with pytest.raises(Conflict):
        service.update_project(session, other.id, {"name": "p1"})
    assert [p.name for p in service.list_projects(session)] == ["admin", "p1", "p2"]


def test_project_filters_by_name_enabled_and_tags(session: Session) -> None:
    service.create_project(session, {"name": "a", "tags": ["x", "y"]})
    service.create_project(session, {"name": "b", "tags": ["y"], "enabled": False})

    def names(**filters: object) -> list[str]:
        return [p.name for p in service.list_projects(session, dict(filters))]

    assert names(name="a") == ["a"]
    assert names(enabled=False) == ["b"]
    assert names(tags=["x", "y"]) == ["a"]
    assert names(**{"tags-any": ["y"]}) == ["a", "b"]
    assert names(**{"not-tags-any": ["x"]}) == ["admin", "b"]


def test_user_password_is_stored_hashed(session: Session) -> None:
    user = service.create_user(session, {"name": "alice", "password": "s3cret"})
    assert "s3cret" not in user.password_hash
    assert verify_password("s3cret", user.password_hash)
    nopass = service.create_user(session, {"name": "nopass"})
    assert not verify_password("", nopass.password_hash)


def test_user_default_project_must_exist(session: Session) -> None:
    with pytest.raises(BadRequest, match="default_project_id"):
        service.create_user(session, {"name": "u", "default_project_id": "nope"})


def test_deleting_a_project_removes_its_assignments(session: Session) -> None:
    project = service.create_project(session, {"name": "p1"})
    user = service.create_user(
        session, {"name": "alice", "password": "pw", "default_project_id": project.id}
    )
    before = assignments(session)
    grants.grant(
        session, Actor(user_id=user.id), Target(project_id=project.id), role(session, "member").id
    )
    assert assignments(session) == before + 1
    service.delete_project(session, project.id)
    assert assignments(session) == before
    assert session.get(User, user.id).default_project_id is None  # type: ignore[union-attr]
    with pytest.raises(NotFound, match="project"):
        service.get_project(session, project.id)


def test_deleting_a_user_removes_its_assignments(session: Session) -> None:
    project = service.create_project(session, {"name": "p1"})
    user = service.create_user(session, {"name": "alice", "password": "pw"})
    before = assignments(session)
    grants.grant(
        session, Actor(user_id=user.id), Target(project_id=project.id), role(session, "reader").id
    )
    service.delete_user(session, user.id)
    assert assignments(session) == before
    assert session.get(Project, project.id) is not None


def test_grant_is_idempotent_and_revoke_of_missing_is_404(session: Session) -> None:
    project = service.create_project(session, {"name": "p1"})
    user = service.create_user(session, {"name": "alice", "password": "pw"})
    member = role(session, "member")
    grants.grant(session, Actor(user_id=user.id), Target(project_id=project.id), member.id)
    grants.grant(session, Actor(user_id=user.id), Target(project_id=project.id), member.id)
    assert [
        r.name
        for r in grants.roles_of(session, Actor(user_id=user.id), Target(project_id=project.id))
    ] == ["member"]
    assert grants.has_role(
        session, Actor(user_id=user.id), Target(project_id=project.id), member.id
    )
    grants.revoke(session, Actor(user_id=user.id), Target(project_id=project.id), member.id)
    assert not grants.has_role(
        session, Actor(user_id=user.id), Target(project_id=project.id), member.id
    )
    with pytest.raises(NotFound, match="role assignment"):
        grants.revoke(session, Actor(user_id=user.id), Target(project_id=project.id), member.id)
    with pytest.raises(NotFound, match="user"):
        grants.grant(
            session, Actor(user_id="no-such-user"), Target(project_id=project.id), member.id
        )


def test_effective_assignments_include_implied_roles(session: Session) -> None:
    project = service.create_project(session, {"name": "p1"})
    user = service.create_user(session, {"name": "alice", "password": "pw"})
    grants.grant(
        session, Actor(user_id=user.id), Target(project_id=project.id), role(session, "member").id
    )
    direct = grants.list_assignments(session, AssignmentFilter(user_id=user.id))
    assert [row.role.name for row in direct] == ["member"]
    effective = grants.list_assignments(session, AssignmentFilter(user_id=user.id, effective=True))
    assert sorted(row.role.name for row in effective) == ["member", "reader"]
    only_reader = grants.list_assignments(
        session,
        AssignmentFilter(user_id=user.id, effective=True, role_id=role(session, "reader").id),
    )
    assert [row.prior_role.name for row in only_reader if row.prior_role] == ["member"]


def test_bootstrap_admin_is_protected(session: Session) -> None:
    admin = service.list_users(session, {"name": "admin"})[0]
    admin_project = service.list_projects(session, {"name": "admin"})[0]
    with pytest.raises(Forbidden):
        service.delete_user(session, admin.id)
    with pytest.raises(Forbidden):
        service.update_user(session, admin.id, {"enabled": False})
    with pytest.raises(Forbidden):
        service.delete_project(session, admin_project.id)
    with pytest.raises(Forbidden):
        grants.revoke(
            session,
            Actor(user_id=admin.id),
            Target(project_id=admin_project.id),
            role(session, "admin").id,
        )
    with pytest.raises(Forbidden):
        service.delete_role(session, role(session, "member").id)


def test_custom_roles_can_be_made_and_removed(session: Session) -> None:
    made = service.create_role(session, {"name": "auditor", "description": "reads logs"})
    with pytest.raises(Conflict):
        service.create_role(session, {"name": "auditor"})
    service.delete_role(session, made.id)
    assert service.list_roles(session, "auditor") == []


def test_password_change_invalidates_older_tokens(session: Session) -> None:
    project = service.create_project(session, {"name": "p1"})
    user = service.create_user(session, {"name": "alice", "password": "old"})
    grants.grant(
        session, Actor(user_id=user.id), Target(project_id=project.id), role(session, "member").id
    )
    from datetime import timedelta

    from kumo.db.base import utcnow

    old_token, _ = issue(session, user.id, project.id, now=utcnow() - timedelta(seconds=5))
    context_for(session, old_token)
    with pytest.raises(Unauthorized):
        service.change_password(session, user.id, "wrong", "new")
    service.change_password(session, user.id, "old", "new")
    with pytest.raises(Unauthorized, match="password"):
        context_for(session, old_token)
    fresh, _ = issue(session, user.id, project.id)
    assert context_for(session, fresh)[0].user_name == "alice"
