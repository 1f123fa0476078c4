"""Applied writes: the last queued write each writer stored, so none is applied twice.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "applied_writes",
        sa.Column("writer", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("applied_utc", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("writer"),
    )


def downgrade() -> None:
    op.drop_table("applied_writes")
