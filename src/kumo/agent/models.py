"""The compute hosts of a cloud: one row per `kumo agent` (or `kumo up`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kumo.db.base import Base, new_id, utcnow


class ComputeNode(Base):
    """nova's `services` row of a nova-compute and its `compute_nodes` row in one.

    The agent writes what the host has (vCPUs, RAM, disk, its allocation ratios) at
    start and `last_seen_at` every heartbeat; the scheduler and os-hypervisors read it.
    """

    __tablename__ = "compute_nodes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    host: Mapped[str] = mapped_column(String(255), unique=True)
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova")
    host_ip: Mapped[str] = mapped_column(String(64), default="")
    # Where the agent answers the API's synchronous calls (console log), if it does.
    agent_url: Mapped[str] = mapped_column(String(255), default="")
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    local_gb: Mapped[int] = mapped_column(Integer, default=0)
    cpu_allocation_ratio: Mapped[float] = mapped_column(Float, default=4.0)
    ram_allocation_ratio: Mapped[float] = mapped_column(Float, default=1.0)
    disk_allocation_ratio: Mapped[float] = mapped_column(Float, default=1.0)
    reserved_host_memory_mb: Mapped[int] = mapped_column(Integer, default=512)
    hypervisor_version: Mapped[int] = mapped_column(Integer, default=0)
    disabled: Mapped[bool] = mapped_column(default=False)
    disabled_reason: Mapped[str | None] = mapped_column(Text, default=None)
    forced_down: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiService(Base):
    """A host that runs API processes: in kumo the scheduler and the conductor run in
    every API process, so os-services lists them once per such host, up while any of
    its API processes beats (kumo.agent.presence)."""

    __tablename__ = "api_services"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    host: Mapped[str] = mapped_column(String(255), unique=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Migration(Base):
    """A cold migration of a server between two hosts (nova's `migrations`, os-migrations).

    status: pre-migrating -> migrating -> finished (VERIFY_RESIZE) -> confirmed | reverted,
    or error.
    """

    __tablename__ = "migrations"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), default=new_id, unique=True)
    server_id: Mapped[str] = mapped_column(String(36), index=True)
    source_compute: Mapped[str] = mapped_column(String(255))
    dest_compute: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32), default="pre-migrating")
    migration_type: Mapped[str] = mapped_column(String(32), default="migration")
    flavor_id: Mapped[str] = mapped_column(String(64), default="")
    project_id: Mapped[str] = mapped_column(String(64), default="")
    user_id: Mapped[str] = mapped_column(String(64), default="")
    # Whether the guest ran before: it runs again where the server ends up.
    was_running: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
