"""where deleted tasks stood in their key's list, so a list cursor on one still pages on

Revision ID: 0011
Revises: 0010
Create Date: 2027-01-20 00:11:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deleted_tasks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner_id", sa.String(40), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("deleted_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_deleted_tasks_deleted_at", "deleted_tasks", ["deleted_at"])


def downgrade() -> None:
    op.drop_index("ix_deleted_tasks_deleted_at", table_name="deleted_tasks")
    op.drop_table("deleted_tasks")
