"""The SQL schema of nudaq as typed SQLAlchemy 2 ORM models.

Times of day are stored in UTC (timezone-aware); times on the DAQ's common clock are
integer nanoseconds (``*_ns``), so sums of exposure are exact and bit-identical between a
live run and its replay. ``tag`` is ``""`` for what the live DAQ filled and the replay tag
for re-processed results, so a replay never overwrites the original.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every nudaq table."""


class Run(Base):
    """One run: its number, times, provenance and quality."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True, index=True)
    state: Mapped[str] = mapped_column(String(16), default="running")  # daq.store.runs.RUN_STATES
    started_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    stopped_utc: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    comment: Mapped[str] = mapped_column(Text, default="")
    config_json: Mapped[str] = mapped_column(Text)
    config_sha256: Mapped[str] = mapped_column(String(64))
    nudaq_version: Mapped[str] = mapped_column(String(32))
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    raw_file: Mapped[str | None] = mapped_column(Text)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    raw_bytes: Mapped[int | None] = mapped_column(BigInteger)
    quality: Mapped[str] = mapped_column(String(16), default="unchecked")  # unchecked|good|bad
    quality_reason: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")

    exposures: Mapped[list[Exposure]] = relationship(back_populates="run")


class ReactorInterval(Base):
    """A stretch of a run with one reactor state, on the DAQ clock (ns)."""

    __tablename__ = "reactor_intervals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(64), default="")
    reactor: Mapped[str] = mapped_column(String(3))  # on|off
    start_ns: Mapped[int] = mapped_column(BigInteger)
    end_ns: Mapped[int | None] = mapped_column(BigInteger)
    power_MW: Mapped[float] = mapped_column(Float, default=0.0)


class Exposure(Base):
    """Exposure and random-trigger counts of a run in one reactor state."""

    __tablename__ = "exposures"
    __table_args__ = (UniqueConstraint("run_id", "tag", "reactor"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(64), default="")
    reactor: Mapped[str] = mapped_column(String(3))
    elapsed_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    uncovered_ns: Mapped[int] = mapped_column(BigInteger, default=0)  # dead or blind
    dead_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    dead_span_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    live_ns: Mapped[int] = mapped_column(BigInteger, default=0)  # daq.build.increments
    rt_events: Mapped[int] = mapped_column(BigInteger, default=0)
    rt_ac: Mapped[int] = mapped_column(BigInteger, default=0)
    rt_crv: Mapped[int] = mapped_column(BigInteger, default=0)
    rt_any: Mapped[int] = mapped_column(BigInteger, default=0)
    events_all: Mapped[int] = mapped_column(BigInteger, default=0)
    events_ac: Mapped[int] = mapped_column(BigInteger, default=0)
    events_crv: Mapped[int] = mapped_column(BigInteger, default=0)
    events_candidate: Mapped[int] = mapped_column(BigInteger, default=0)
    events_uncovered: Mapped[int] = mapped_column(BigInteger, default=0)

    run: Mapped[Run] = relationship(back_populates="exposures")


class SpectrumBin(Base):
    """Counts in one energy bin of one spectrum (run x tag x reactor x category).

    Only nonzero bins are stored. On SQLite the table is clustered on its primary key
    (WITHOUT ROWID), so summing one category over many runs reads contiguous pages.
    """

    __tablename__ = "spectrum_bins"
    __table_args__ = {"sqlite_with_rowid": False}

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    reactor: Mapped[str] = mapped_column(String(3), primary_key=True)
    category: Mapped[str] = mapped_column(String(16), primary_key=True)
    bin: Mapped[int] = mapped_column(Integer, primary_key=True)
    counts: Mapped[int] = mapped_column(BigInteger, default=0)


class StreamStat(Base):
    """Per-stream bookkeeping of a run: pulses received and everything known lost."""

    __tablename__ = "stream_stats"
    __table_args__ = (UniqueConstraint("run_id", "tag", "stream"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(64), default="")
    stream: Mapped[str] = mapped_column(String(16))
    pulses: Mapped[int] = mapped_column(BigInteger, default=0)
    dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    lost_frames: Mapped[int] = mapped_column(BigInteger, default=0)
    missing_batches: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected_messages: Mapped[int] = mapped_column(BigInteger, default=0)
    dead_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    uncovered_ns: Mapped[int] = mapped_column(BigInteger, default=0)


class CoverageGap(Base):
    """A stretch of one stream's time that it did not cover, and why (daq.build.coverage):
    HPGe dead time or a veto's blind time, on the DAQ clock (ns)."""

    __tablename__ = "coverage_gaps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(64), default="")
    stream: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(16))  # daq.core.records.LOSS_NAMES
    start_ns: Mapped[int] = mapped_column(BigInteger)
    end_ns: Mapped[int] = mapped_column(BigInteger)


class RawFile(Base):
    """A raw run file written for a run (kind ``pulses`` or ``events``), see daq.formats.rawfile."""

    __tablename__ = "raw_files"
    __table_args__ = (UniqueConstraint("run_id", "tag", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(64), default="")
    kind: Mapped[str] = mapped_column(String(16))  # pulses|events
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)


class RawFileDamage(Base):
    """One damaged stretch that daq.formats.rawfile.RawReader skipped in a raw file."""

    __tablename__ = "raw_file_damage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    run_number: Mapped[int | None] = mapped_column(Integer, index=True)
    path: Mapped[str] = mapped_column(Text)
    offset: Mapped[int] = mapped_column(BigInteger)
    bytes_skipped: Mapped[int] = mapped_column(BigInteger)
    batches_read: Mapped[int] = mapped_column(BigInteger)
    last_good_ns: Mapped[int | None] = mapped_column(BigInteger)
    resumed_ns: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)


class SlowControlReading(Base):
    """One slow-control value (reactor power, HV, LN2 level, temperatures)."""

    __tablename__ = "slow_control"
    __table_args__ = (Index("ix_slow_control_quantity_time", "quantity", "time_utc"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    clock_ns: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(16))


class LogbookEntry(Base):
    """A logbook entry, written by a shifter or automatically by the system."""

    __tablename__ = "logbook"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    author: Mapped[str] = mapped_column(String(64))
    run_number: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)


class Alarm(Base):
    """An alarm: raised, acknowledged by a shifter, cleared."""

    __tablename__ = "alarms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    message: Mapped[str] = mapped_column(Text)
    raised_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    acked_utc: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acked_by: Mapped[str | None] = mapped_column(String(64))
    cleared_utc: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AnalysisHistory(Base):
    """One row of the live analysis: what the collaboration watches grow."""

    __tablename__ = "analysis_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    run_number: Mapped[int | None] = mapped_column(Integer)
    exposure_on_kg_day: Mapped[float] = mapped_column(Float)
    exposure_off_kg_day: Mapped[float] = mapped_column(Float)
    background_cpd: Mapped[float | None] = mapped_column(Float)
    background_cpd_error: Mapped[float | None] = mapped_column(Float)
    mu_nu2_1e20: Mapped[float | None] = mapped_column(Float)
    mu_nu2_1e20_error: Mapped[float | None] = mapped_column(Float)
    limit_90_muB: Mapped[float | None] = mapped_column(Float)
    expected_limit_90_muB: Mapped[float | None] = mapped_column(Float)
    live_fraction: Mapped[float | None] = mapped_column(Float)
    accidental_ac: Mapped[float | None] = mapped_column(Float)
    accidental_crv: Mapped[float | None] = mapped_column(Float)


class AppliedWrite(Base):
    """The last write of one writer that is stored (daq.store.durable): a writer's queued
    writes are applied one at a time in the order of their sequence numbers, each in a
    transaction that also advances ``seq`` here, so a write at or below ``seq`` is stored
    and is never applied again."""

    __tablename__ = "applied_writes"

    writer: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    applied_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
