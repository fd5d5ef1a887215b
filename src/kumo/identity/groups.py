"""Groups of users: a role granted to a group is held by each of its members."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kumo.errors import Conflict, NotFound
from kumo.identity.domains import domain_for_new
from kumo.identity.models import Group, GroupMember, RoleAssignment, User


def get_group(session: Session, group_id: str) -> Group:
    """The group with this id, or NotFound."""
    group = session.get(Group, group_id)
    if group is None:
        raise NotFound(f"Could not find group: {group_id}.")
    return group


def _duplicate(name: str) -> Conflict:
    return Conflict(f"Conflict occurred attempting to store group - it is not permitted to "
                    f"have two groups with the same name in the same domain : {name}.")


def _name_taken(session: Session, name: str, domain_id: str, own_id: str | None = None) -> bool:
    found = session.scalar(select(Group.id).where(Group.name == name,
                                                  Group.domain_id == domain_id))
    return found is not None and found != own_id


def _flush(session: Session, name: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise _duplicate(name) from None


def create_group(session: Session, fields: dict[str, Any]) -> Group:
    """A new group in its domain (default); 409 if the name is taken there."""
    fields = dict(fields)
    fields["domain_id"] = domain_for_new(session, fields.get("domain_id")).id
    if _name_taken(session, fields["name"], fields["domain_id"]):
        raise _duplicate(fields["name"])
    group = Group(**fields)
    session.add(group)
    _flush(session, fields["name"])
    return group


def list_groups(session: Session, filters: dict[str, Any]) -> list[Group]:
    query = select(Group).order_by(Group.name)
    if "name" in filters:
        query = query.where(Group.name == filters["name"])
    if "domain_id" in filters:
        query = query.where(Group.domain_id == filters["domain_id"])
    return list(session.scalars(query))


def update_group(session: Session, group_id: str, fields: dict[str, Any]) -> Group:
    group = get_group(session, group_id)
    if "name" in fields and _name_taken(session, fields["name"], group.domain_id, group.id):
        raise _duplicate(fields["name"])
    extra = fields.pop("extra", None)
    for key, value in fields.items():
        setattr(group, key, value)
    if extra:
        group.extra = {**(group.extra or {}), **extra}
    _flush(session, group.name)
    return group


def delete_group(session: Session, group_id: str) -> None:
    """Delete a group, its memberships and the roles granted to it."""
    group = get_group(session, group_id)
    session.execute(delete(RoleAssignment).where(RoleAssignment.group_id == group.id))
    session.execute(delete(GroupMember).where(GroupMember.group_id == group.id))
    session.delete(group)
    session.flush()


def _user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"Could not find user: {user_id}.")
    return user


def add_member(session: Session, group_id: str, user_id: str) -> None:
    """Put a user in a group (again: nothing changes)."""
    get_group(session, group_id)
    _user(session, user_id)
    if session.get(GroupMember, (group_id, user_id)) is None:
        session.add(GroupMember(group_id=group_id, user_id=user_id))
        session.flush()


def is_member(session: Session, group_id: str, user_id: str) -> bool:
    get_group(session, group_id)
    _user(session, user_id)
    return session.get(GroupMember, (group_id, user_id)) is not None


def remove_member(session: Session, group_id: str, user_id: str) -> None:
    if not is_member(session, group_id, user_id):
        raise NotFound(f"User {user_id} is not a member of group {group_id}.")
    member = session.get(GroupMember, (group_id, user_id))
    session.delete(member)
    session.flush()


def members(session: Session, group_id: str) -> list[User]:
    get_group(session, group_id)
    return list(session.scalars(select(User).join(GroupMember, GroupMember.user_id == User.id)
                                .where(GroupMember.group_id == group_id).order_by(User.name)))


def groups_of(session: Session, user_id: str) -> list[Group]:
    _user(session, user_id)
    return list(session.scalars(select(Group).join(GroupMember, GroupMember.group_id == Group.id)
                                .where(GroupMember.user_id == user_id).order_by(Group.name)))
