"""when the retention sweep removed a task's files

Revision ID: 0013
Revises: 0012
Create Date: 2027-01-28 00:13:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("files_removed_at", sa.Float(), nullable=True))
    op.create_index("ix_tasks_expiry", "tasks", ["files_removed_at", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_expiry", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("files_removed_at")
