"""what deleted tasks counted for in the usage charts, summed per day, account and key

Revision ID: 0012
Revises: 0011
Create Date: 2027-01-27 00:12:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deleted_usage",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("provider", sa.String(100), primary_key=True),
        sa.Column("owner_id", sa.String(40), primary_key=True),
        sa.Column("tasks", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("credits", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deleted_usage")
