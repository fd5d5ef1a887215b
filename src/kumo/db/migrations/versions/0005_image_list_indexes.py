"""image list indexes: walk images by created_at/updated_at, find tags and properties by name

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_images_created_at_id", "images", ["created_at", "id"])
    op.create_index("ix_images_updated_at_id", "images", ["updated_at", "id"])
    op.create_index("ix_image_tags_value", "image_tags", ["value"])
    op.create_index("ix_image_properties_name", "image_properties", ["name"])


def downgrade() -> None:
    op.drop_index("ix_image_properties_name", table_name="image_properties")
    op.drop_index("ix_image_tags_value", table_name="image_tags")
    op.drop_index("ix_images_updated_at_id", table_name="images")
    op.drop_index("ix_images_created_at_id", table_name="images")
