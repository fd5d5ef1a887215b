"""Compute tables: flavors, key pairs, servers, actions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kumo.db.base import Base, new_id, utcnow

# nova/compute/power_state.py
NOSTATE, RUNNING, PAUSED, SHUTDOWN, CRASHED, SUSPENDED = 0, 1, 3, 4, 6, 7

# nova/compute/vm_states.py (the ones kumo reaches)
BUILDING, ACTIVE, STOPPED, ERROR, DELETED = "building", "active", "stopped", "error", "deleted"


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
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


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
    key_name: Mapped[str | None] = mapped_column(String(255), default=None)
    key_data: Mapped[str | None] = mapped_column(Text, default=None)
    user_data: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    config_drive: Mapped[bool] = mapped_column(default=False)
    meta: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    security_group_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    vm_state: Mapped[str] = mapped_column(String(16), default=BUILDING)
    task_state: Mapped[str | None] = mapped_column(String(32), default="scheduling")
    power_state: Mapped[int] = mapped_column(default=NOSTATE)
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    host_ports: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    reservation_id: Mapped[str] = mapped_column(String(32), default="")
    launch_index: Mapped[int] = mapped_column(default=0)
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova")
    locked: Mapped[bool] = mapped_column(default=False)
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


def server_status(vm_state: str, task_state: str | None) -> str:
    """nova/api/openstack/common.py `_STATE_MAP`, the subset kumo reaches."""
    if vm_state == ACTIVE:
        if task_state == "rebooting":
            return "REBOOT"
        if task_state == "rebooting_hard":
            return "HARD_REBOOT"
        return "ACTIVE"
    return {
        BUILDING: "BUILD",
        STOPPED: "SHUTOFF",
        ERROR: "ERROR",
        DELETED: "DELETED",
    }.get(vm_state, "UNKNOWN")


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
