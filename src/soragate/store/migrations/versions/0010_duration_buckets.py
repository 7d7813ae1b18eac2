"""job durations counted in buckets (an estimate the order jobs end in does not bias), and
when an upstream last called back about a task

Revision ID: 0010
Revises: 0009
Create Date: 2027-01-12 00:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_durations") as batch:
        batch.add_column(sa.Column("buckets", sa.JSON(), nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("poked_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("poked_at")
    with op.batch_alter_table("job_durations") as batch:
        batch.drop_column("buckets")
