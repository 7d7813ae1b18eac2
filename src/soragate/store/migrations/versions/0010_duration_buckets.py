"""job durations counted in buckets, for an estimate the order jobs end in does not bias

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


def downgrade() -> None:
    with op.batch_alter_table("job_durations") as batch:
        batch.drop_column("buckets")
