"""engine state in the database: step errors, tried accounts, shared poll slots, workers

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 23:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step_errors", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("tried_accounts", sa.JSON(), nullable=True))
        batch_op.create_index("ix_tasks_provider_submit", ["provider", "submit_state"], unique=False)
    with op.batch_alter_table("provider_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("poll_next_at", sa.Float(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("last_failed_task", sa.String(length=40), nullable=True))
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.Column("steps", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("workers")
    with op.batch_alter_table("provider_accounts", schema=None) as batch_op:
        batch_op.drop_column("last_failed_task")
        batch_op.drop_column("poll_next_at")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_provider_submit")
        batch_op.drop_column("tried_accounts")
        batch_op.drop_column("step_errors")
