"""the upstream's "done" answer, kept while the task's result is fetched; tasks found by
their upstream job (callbacks, a job id given twice)

Revision ID: 0014
Revises: 0013
Create Date: 2027-02-04 00:14:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("job_done", sa.JSON(), nullable=True))
    op.create_index("ix_tasks_upstream", "tasks", ["provider", "upstream_id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_upstream", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("job_done")
