"""The JSON documents of the web API (pydantic): what every endpoint takes and returns.

Times are ISO 8601 UTC strings, durations in s, rates in Hz (pulses per wall second),
spectra in counts and in counts/(kg keV day) (cpd), exposures in kg day.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field


def _utc(value: datetime) -> datetime:
    """Times from SQLite come back naive; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


UTCTime = Annotated[datetime, AfterValidator(_utc)]
"""A UTC time, serialised with its offset so that browsers do not take it as local time."""
Reactor = Literal["on", "off"]
CategoryName = Literal["all", "ac", "crv", "candidate", "rt"]
Quality = Literal["unchecked", "good", "bad"]


class StreamStatus(BaseModel):
    """One detector stream in the live overview."""

    name: str
    rate_hz: float = 0.0
    pulses: int = 0
    lost: int = 0
    uncovered_s: float = Field(0.0, description="dead (HPGe) or blind (veto) time this run (s)")


class AlarmOut(BaseModel):
    id: int
    name: str
    severity: str
    message: str
    raised_utc: UTCTime
    acked_utc: UTCTime | None = None
    acked_by: str | None = None
    cleared_utc: UTCTime | None = None


class Status(BaseModel):
    """The live overview: what the page shows at a glance, pushed every second.

    Every value carries the time it is from: run control's part ``run_control_utc``, the
    builder's (reactor, rates, pulses, losses, dead time, events) ``snapshot_utc``, the power
    ``power_utc`` and the alarms ``database_utc``. ``stale`` says that the builder has sent
    nothing for more than ``stale_after_s`` (``web.stale_after_s``); the pages then say in red
    that there is no data since ``last_data_utc``.
    """

    time_utc: UTCTime = Field(description="when this status was composed")
    reachable: bool = Field(description="run control answered the last status request")
    run_control_utc: UTCTime | None = Field(None, description="when run control last answered")
    state: str = Field(description="idle|running|stopping|error, or unknown")
    run: int | None = None
    elapsed_s: float = 0.0
    error: str = ""
    reactor: str = Field("unknown", description="on|off|unknown")
    power_MW: float | None = None
    power_utc: UTCTime | None = Field(None, description="when the power was measured")
    dead_fraction: float | None = None
    streams: list[StreamStatus] = []
    events: dict[str, int] = Field({}, description="events of this run per category")
    processes: list[str] = Field([], description="processes connected to run control")
    snapshot_utc: UTCTime | None = Field(None, description="time of the builder snapshot shown")
    snapshot_age_s: float | None = Field(None, description="its age at time_utc (s)")
    stale: bool = Field(description="no builder snapshot, or older than stale_after_s")
    stale_after_s: float
    last_data_utc: UTCTime | None = Field(
        None, description="newest data known: the snapshot, else the newest power reading"
    )
    database_ok: bool = Field(description="the last read of the database succeeded")
    database_error: str = Field("", description="why not, when it did not")
    database_utc: UTCTime | None = Field(None, description="when the database was last read")
    monitor_up: bool = Field(description="the monitor process is connected to run control")
    alarms_known: bool = Field(description="monitor up and alarms read: the list is current")
    alarms_note: str = Field("", description="why the alarm state is unknown")
    alarms: list[AlarmOut] = Field([], description="alarms not yet cleared (as last read)")


class SpectrumOut(BaseModel):
    """A spectrum summed over runs: counts and counts/(kg keV day) per energy bin."""

    reactor: Reactor | None
    category: CategoryName
    runs: list[int]
    bin_edges_keV: list[float]
    counts: list[int]
    live_time_s: float
    exposure_kg_day: float
    rate_cpd: list[float]
    rate_cpd_error: list[float]


class Curve(BaseModel):
    """An expected magnetic-moment spectrum on the residual's bins (cpd)."""

    label: str
    mu_nu2_1e20: float
    rate_cpd: list[float]


class ResidualOut(BaseModel):
    """Reactor ON minus OFF, each normalised by its own exposure (cpd)."""

    category: CategoryName
    runs_on: list[int]
    runs_off: list[int]
    bin_edges_keV: list[float]
    rate_cpd: list[float]
    rate_cpd_error: list[float]
    curves: list[Curve] = []


class AnalysisPoint(BaseModel):
    """One row of the live analysis history."""

    time_utc: UTCTime
    run_number: int | None
    exposure_on_kg_day: float
    exposure_off_kg_day: float
    background_cpd: float | None = None
    background_cpd_error: float | None = None
    mu_nu2_1e20: float | None = None
    mu_nu2_1e20_error: float | None = None
    limit_90_muB: float | None = None
    expected_limit_90_muB: float | None = None
    live_fraction: float | None = None
    accidental_ac: float | None = None
    accidental_crv: float | None = None


class AnalysisOut(BaseModel):
    """The latest live analysis and the runs it contains (good or unchecked)."""

    latest: AnalysisPoint | None
    runs: list[int] = Field(description="runs the current result is built from")


class Series(BaseModel):
    """A time series: ISO times and values."""

    name: str
    unit: str
    time_utc: list[UTCTime]
    values: list[float]


class HistoryOut(BaseModel):
    analysis: list[AnalysisPoint]
    slow_control: list[Series]
    rates: list[Series] = Field(description="live rates per stream since the server started")


class Condition(BaseModel):
    name: str
    meaning: str
    threshold: str


class AlarmsOut(BaseModel):
    alarms: list[AlarmOut]
    conditions: list[Condition]


class LogbookEntryOut(BaseModel):
    id: int
    time_utc: UTCTime
    author: str
    run_number: int | None
    text: str
    automatic: bool


class LogbookIn(BaseModel):
    text: str = Field(min_length=1, max_length=20_000)
    run_number: int | None = None


class RunOut(BaseModel):
    number: int
    state: str
    started_utc: UTCTime
    stopped_utc: UTCTime | None
    comment: str
    quality: str
    quality_reason: str
    live_time_on_s: float
    live_time_off_s: float
    events_candidate: int
    in_analysis: bool = Field(description="the live analysis contains this run (good or unchecked)")


class QualityIn(BaseModel):
    quality: Quality
    reason: str = Field("", max_length=2000)


class LoginIn(BaseModel):
    token: str = Field(min_length=1, max_length=500)
    name: str = Field("shifter", min_length=1, max_length=64)


class SessionOut(BaseModel):
    logged_in: bool
    name: str | None = None
    csrf_token: str | None = Field(None, description="send back as X-CSRF-Token")


class RunStartIn(BaseModel):
    comment: str = Field("", max_length=2000)


class RunControlReply(BaseModel):
    """What run control answered to a start or stop."""

    ok: bool
    error: str = ""
    run: int | None = None
    summary: dict | None = None
