"""Coverage: uncovered (dead or blind) time in exposures and stream stats, the gaps per run.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EXPOSURE_COLUMNS = ("uncovered_ns", "dead_span_ns", "events_uncovered")


def _counter(name: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    with op.batch_alter_table("exposures") as batch:
        for name in _EXPOSURE_COLUMNS:
            batch.add_column(_counter(name))
    with op.batch_alter_table("stream_stats") as batch:
        batch.add_column(_counter("uncovered_ns"))
    op.create_table(
        "coverage_gaps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("end_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_coverage_gaps_run_id"), "coverage_gaps", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_table("coverage_gaps")
    with op.batch_alter_table("stream_stats") as batch:
        batch.drop_column("uncovered_ns")
    with op.batch_alter_table("exposures") as batch:
        for name in _EXPOSURE_COLUMNS:
            batch.drop_column(name)
