"""per-key request rate and tasks-in-flight limits

Revision ID: 0009
Revises: 0008
Create Date: 2027-01-10 00:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("rate_limit", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_in_flight", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rate_next_at", sa.Float(), nullable=False, server_default="0"))
    op.create_index("ix_tasks_owner_status", "tasks", ["owner_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_tasks_owner_status", table_name="tasks")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("rate_next_at")
        batch.drop_column("max_in_flight")
        batch.drop_column("rate_limit")
