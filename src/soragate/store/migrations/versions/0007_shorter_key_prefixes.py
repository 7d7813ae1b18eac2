"""API keys show four characters after sk-sg-, as every other secret's mask does

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-10 00:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# "sk-sg-" and four characters of the key.
SHOWN = 10


def upgrade() -> None:
    keys = sa.table("api_keys", sa.column("prefix", sa.String))
    op.execute(
        keys.update()
        .where(sa.func.length(keys.c.prefix) > SHOWN)
        .values(prefix=sa.func.substr(keys.c.prefix, 1, SHOWN))
    )


def downgrade() -> None:
    pass  # the characters dropped are not stored anywhere else
