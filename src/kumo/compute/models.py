"""Compute tables: flavors, key pairs, servers, actions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kumo.db.base import Base, new_id, utcnow

# nova/compute/power_state.py
NOSTATE, RUNNING, PAUSED, SHUTDOWN, CRASHED, SUSPENDED = 0, 1, 3, 4, 6, 7

# nova/compute/vm_states.py
BUILDING, ACTIVE, STOPPED, ERROR, DELETED = "building", "active", "stopped", "error", "deleted"
PAUSED_VM, SUSPENDED_VM, RESCUED, RESIZED = "paused", "suspended", "rescued", "resized"
SOFT_DELETED, SHELVED, SHELVED_OFFLOADED = "soft-delete", "shelved", "shelved_offloaded"


class Flavor(Base):
    __tablename__ = "flavors"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # nova's flavorid
    name: Mapped[str] = mapped_column(String(255), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram: Mapped[int] = mapped_column(Integer)  # MB
    disk: Mapped[int] = mapped_column(Integer)  # GB
    ephemeral: Mapped[int] = mapped_column(Integer, default=0)
    swap: Mapped[int] = mapped_column(Integer, default=0)  # MB
    rxtx_factor: Mapped[float] = mapped_column(default=1.0)
    is_public: Mapped[bool] = mapped_column(default=True)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    extra_specs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FlavorAccess(Base):
    """Projects that may use a private flavor (os-flavor-access)."""

    __tablename__ = "flavor_access"

    flavor_id: Mapped[str] = mapped_column(
        ForeignKey("flavors.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class KeyPair(Base):
    __tablename__ = "keypairs"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(16), default="ssh")
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Server(Base):
    __tablename__ = "servers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), index=True)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    image_id: Mapped[str] = mapped_column(String(36))
    # The flavor as it was at boot: flavors may be deleted while servers live on.
    flavor_id: Mapped[str] = mapped_column(String(255))
    flavor_name: Mapped[str] = mapped_column(String(255))
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer)
    ephemeral_gb: Mapped[int] = mapped_column(Integer, default=0)
    swap_mb: Mapped[int] = mapped_column(Integer, default=0)
    flavor_extra_specs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    key_name: Mapped[str | None] = mapped_column(String(255), default=None)
    key_data: Mapped[str | None] = mapped_column(Text, default=None)
    user_data: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    config_drive: Mapped[bool] = mapped_column(default=False)
    meta: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    security_group_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    vm_state: Mapped[str] = mapped_column(String(32), default=BUILDING)
    task_state: Mapped[str | None] = mapped_column(String(32), default="scheduling")
    power_state: Mapped[int] = mapped_column(default=NOSTATE)
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    host_ports: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    reservation_id: Mapped[str] = mapped_column(String(32), default="")
    launch_index: Mapped[int] = mapped_column(default=0)
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova")
    locked: Mapped[bool] = mapped_column(default=False)
    locked_by: Mapped[str | None] = mapped_column(String(16), default=None)  # owner | admin
    locked_reason: Mapped[str | None] = mapped_column(Text, default=None)
    disk_config: Mapped[str] = mapped_column(String(8), default="MANUAL")  # OS-DCF
    access_ipv4: Mapped[str] = mapped_column(String(64), default="")
    access_ipv6: Mapped[str] = mapped_column(String(64), default="")
    # The flavor before a resize, until it is confirmed or reverted.
    old_flavor: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    shelved_image_id: Mapped[str | None] = mapped_column(String(36), default=None)
    # Set when the server is deleted (the record stays, as nova's does, for actions,
    # usage and `deleted=True` listings) or soft-deleted (reclaimed after an interval).
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    fault_code: Mapped[int | None] = mapped_column(default=None)
    fault_message: Mapped[str | None] = mapped_column(Text, default=None)
    fault_created: Mapped[datetime | None] = mapped_column(default=None)
    launched_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def status(self) -> str:
        """Nova's user-facing status from vm_state and task_state."""
        return server_status(self.vm_state, self.task_state)


_REBUILD_TASKS: dict[str | None, str] = {"rebuilding": "REBUILD",
                                         "rebuild_spawning": "REBUILD"}
_RESIZE_TASKS: dict[str | None, str] = {
    t: "RESIZE" for t in ("resize_prep", "resize_migrating", "resize_migrated", "resize_finish")}
# nova/api/openstack/common.py `_STATE_MAP`: vm_state -> {task_state: status, None: default}
_STATE_MAP: dict[str, dict[str | None, str]] = {
    ACTIVE: {None: "ACTIVE", "rebooting": "REBOOT", "rebooting_hard": "HARD_REBOOT",
             **_REBUILD_TASKS, **_RESIZE_TASKS},
    BUILDING: {None: "BUILD"},
    STOPPED: {None: "SHUTOFF", **_REBUILD_TASKS, **_RESIZE_TASKS},
    RESIZED: {None: "VERIFY_RESIZE", "resize_reverting": "REVERT_RESIZE"},
    PAUSED_VM: {None: "PAUSED"},
    SUSPENDED_VM: {None: "SUSPENDED"},
    RESCUED: {None: "RESCUE"},
    ERROR: {None: "ERROR", **_REBUILD_TASKS},
    DELETED: {None: "DELETED"},
    SOFT_DELETED: {None: "SOFT_DELETED"},
    SHELVED: {None: "SHELVED"},
    SHELVED_OFFLOADED: {None: "SHELVED_OFFLOADED"},
}


def server_status(vm_state: str, task_state: str | None) -> str:
    """Nova's user-facing status of a vm_state and task_state."""
    states = _STATE_MAP.get(vm_state)
    if states is None:
        return "UNKNOWN"
    return states.get(task_state, states[None])


class InstanceAction(Base):
    """What was done to a server and by whom (`os-instance-actions`)."""

    __tablename__ = "instance_actions"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    server_id: Mapped[str] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64), default=None)
    project_id: Mapped[str | None] = mapped_column(String(64), default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    start_time: Mapped[datetime] = mapped_column(default=utcnow)
    finish_time: Mapped[datetime | None] = mapped_column(default=None)
    result: Mapped[str | None] = mapped_column(String(16), default=None)  # Success | Error


class ServerGroup(Base):
    """os-server-groups: servers placed together (affinity) or apart (anti-affinity)."""

    __tablename__ = "server_groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    policy: Mapped[str] = mapped_column(String(32))
    rules: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServerGroupMember(Base):
    __tablename__ = "server_group_members"

    group_id: Mapped[str] = mapped_column(
        ForeignKey("server_groups.id", ondelete="CASCADE"), primary_key=True)
    server_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)


class QuotaLimit(Base):
    """os-quota-sets: a project's (or one user's in it) limit that differs from the default."""

    __tablename__ = "quota_limits"
    __table_args__ = (UniqueConstraint("project_id", "user_id", "resource"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64), default="")  # "" = the whole project
    resource: Mapped[str] = mapped_column(String(64))
    hard_limit: Mapped[int] = mapped_column(Integer)
