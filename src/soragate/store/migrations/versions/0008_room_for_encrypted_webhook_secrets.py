"""room for encrypted webhook secrets

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-10 00:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.alter_column("secret", type_=sa.Text(), existing_type=sa.String(length=100), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.alter_column("secret", type_=sa.String(length=100), existing_type=sa.Text(), existing_nullable=False)
