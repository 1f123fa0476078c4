"""Initial schema: every table of daq.store.models.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("raised_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acked_utc", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_by", sa.String(length=64), nullable=True),
        sa.Column("cleared_utc", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_alarms_name"), "alarms", ["name"], unique=False)

    op.create_table(
        "analysis_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_number", sa.Integer(), nullable=True),
        sa.Column("exposure_on_kg_day", sa.Float(), nullable=False),
        sa.Column("exposure_off_kg_day", sa.Float(), nullable=False),
        sa.Column("background_cpd", sa.Float(), nullable=True),
        sa.Column("background_cpd_error", sa.Float(), nullable=True),
        sa.Column("mu_nu2_1e20", sa.Float(), nullable=True),
        sa.Column("mu_nu2_1e20_error", sa.Float(), nullable=True),
        sa.Column("limit_90_muB", sa.Float(), nullable=True),
        sa.Column("expected_limit_90_muB", sa.Float(), nullable=True),
        sa.Column("live_fraction", sa.Float(), nullable=True),
        sa.Column("accidental_ac", sa.Float(), nullable=True),
        sa.Column("accidental_crv", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_analysis_history_time_utc"), "analysis_history", ["time_utc"], unique=False
    )

    op.create_table(
        "logbook",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("run_number", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_logbook_time_utc"), "logbook", ["time_utc"], unique=False)

    op.create_table(
        "raw_file_damage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_number", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("bytes_skipped", sa.BigInteger(), nullable=False),
        sa.Column("batches_read", sa.BigInteger(), nullable=False),
        sa.Column("last_good_ns", sa.BigInteger(), nullable=True),
        sa.Column("resumed_ns", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_raw_file_damage_run_number"), "raw_file_damage", ["run_number"], unique=False
    )

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_utc", sa.DateTime(timezone=True), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("config_sha256", sa.String(length=64), nullable=False),
        sa.Column("nudaq_version", sa.String(length=32), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("raw_file", sa.Text(), nullable=True),
        sa.Column("raw_sha256", sa.String(length=64), nullable=True),
        sa.Column("raw_bytes", sa.BigInteger(), nullable=True),
        sa.Column("quality", sa.String(length=16), nullable=False),
        sa.Column("quality_reason", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_runs_number"), "runs", ["number"], unique=True)

    op.create_table(
        "slow_control",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("clock_ns", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_slow_control_quantity_time", "slow_control", ["quantity", "time_utc"], unique=False
    )

    op.create_table(
        "exposures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("reactor", sa.String(length=3), nullable=False),
        sa.Column("elapsed_ns", sa.BigInteger(), nullable=False),
        sa.Column("dead_ns", sa.BigInteger(), nullable=False),
        sa.Column("live_ns", sa.BigInteger(), nullable=False),
        sa.Column("rt_events", sa.BigInteger(), nullable=False),
        sa.Column("rt_ac", sa.BigInteger(), nullable=False),
        sa.Column("rt_crv", sa.BigInteger(), nullable=False),
        sa.Column("rt_any", sa.BigInteger(), nullable=False),
        sa.Column("events_all", sa.BigInteger(), nullable=False),
        sa.Column("events_ac", sa.BigInteger(), nullable=False),
        sa.Column("events_crv", sa.BigInteger(), nullable=False),
        sa.Column("events_candidate", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "tag", "reactor"),
    )
    op.create_index(op.f("ix_exposures_run_id"), "exposures", ["run_id"], unique=False)

    op.create_table(
        "raw_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "tag", "kind"),
    )
    op.create_index(op.f("ix_raw_files_run_id"), "raw_files", ["run_id"], unique=False)

    op.create_table(
        "reactor_intervals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("reactor", sa.String(length=3), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("end_ns", sa.BigInteger(), nullable=True),
        sa.Column("power_MW", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_reactor_intervals_run_id"), "reactor_intervals", ["run_id"], unique=False
    )

    op.create_table(
        "spectrum_bins",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("reactor", sa.String(length=3), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("bin", sa.Integer(), nullable=False),
        sa.Column("counts", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "tag", "reactor", "category", "bin"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "stream_stats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=16), nullable=False),
        sa.Column("pulses", sa.BigInteger(), nullable=False),
        sa.Column("dropped", sa.BigInteger(), nullable=False),
        sa.Column("lost_frames", sa.BigInteger(), nullable=False),
        sa.Column("missing_batches", sa.BigInteger(), nullable=False),
        sa.Column("rejected_messages", sa.BigInteger(), nullable=False),
        sa.Column("dead_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "tag", "stream"),
    )
    op.create_index(op.f("ix_stream_stats_run_id"), "stream_stats", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_table("stream_stats")
    op.drop_table("spectrum_bins")
    op.drop_table("reactor_intervals")
    op.drop_table("raw_files")
    op.drop_table("exposures")
    op.drop_table("slow_control")
    op.drop_table("runs")
    op.drop_table("raw_file_damage")
    op.drop_table("logbook")
    op.drop_table("analysis_history")
    op.drop_table("alarms")
