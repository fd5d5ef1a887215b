"""API processes' hosts (where nova-scheduler and nova-conductor run)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 18:45:00

One row per host that runs `kumo api` (or `kumo up` on PostgreSQL), with the last
heartbeat of any of its API processes: os-services lists the scheduler and conductor
of each such host, up or down, as nova lists its control-plane services.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_services",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_services")),
        sa.UniqueConstraint("host", name=op.f("uq_api_services_host")),
    )


def downgrade() -> None:
    op.drop_table("api_services")
