"""console auth tokens

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 03:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_auth_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("console_type", sa.String(length=32), nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_auth_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_auth_tokens_token_hash")),
    )
    with op.batch_alter_table("console_auth_tokens") as batch:
        batch.create_index(batch.f("ix_console_auth_tokens_expires_at"), ["expires_at"])
        batch.create_index(batch.f("ix_console_auth_tokens_server_id"), ["server_id"])


def downgrade() -> None:
    op.drop_table("console_auth_tokens")
