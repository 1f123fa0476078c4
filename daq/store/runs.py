"""Run bookkeeping in SQL: numbers, provenance, end state, quality, logbook, raw-file damage.

Every function works inside the caller's session (``daq.store.session.session_scope``) and
flushes, so the caller decides the transaction. Unknown or duplicate run numbers raise
RunControlError naming the run.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import daq
from daq.core.config import Config
from daq.core.errors import RunControlError
from daq.store.models import LogbookEntry, RawFileDamage, Run, utcnow

if TYPE_CHECKING:
    from daq.formats.rawfile import RawDamage

log = logging.getLogger(__name__)

RUN_STATES = ("running", "ended", "error", "recovered")
"""``recovered``: left running by a crash, closed afterwards from its raw file."""
QUALITIES = ("unchecked", "good", "bad")
# Which run qualities an analysis takes: the shifter's verdict decides what counts.
QUALITY_SELECTIONS = {
    "good": ("good",),
    "usable": ("good", "unchecked"),
    "all": QUALITIES,
}


def get_run(session: Session, number: int) -> Run:
    """The run with this number; RunControlError if there is none."""
    run = session.scalar(select(Run).where(Run.number == number))
    if run is None:
        raise RunControlError(f"run {number} is not in the database")
    return run


def next_run_number(session: Session) -> int:
    """One more than the highest run number so far (1 for an empty database)."""
    return (session.scalar(select(func.max(Run.number))) or 0) + 1


def create_run(
    session: Session, number: int, config: Config, comment: str = "", simulated: bool = False
) -> Run:
    """Record a starting run with its configuration snapshot and the nudaq version."""
    if session.scalar(select(Run.id).where(Run.number == number)) is not None:
        raise RunControlError(f"run {number} already exists")
    run = Run(
        number=number,
        state="running",
        started_utc=utcnow(),
        comment=comment,
        config_json=config.snapshot(),
        config_sha256=config.digest(),
        nudaq_version=daq.__version__,
        simulated=simulated,
    )
    session.add(run)
    session.flush()
    log.info("run %d created (config %s)", number, run.config_sha256[:12])
    return run


def open_runs(session: Session) -> list[int]:
    """Numbers of the runs marked running (at a system's start: left open by a crash)."""
    return list(
        session.scalars(select(Run.number).where(Run.state == "running").order_by(Run.number))
    )


def end_run(
    session: Session,
    number: int,
    state: str = "ended",
    error: str = "",
    at: datetime | None = None,
) -> Run:
    """Mark a run ended (or failed: state 'error' with the error text); its stop time is the
    first one given (``at``, default now)."""
    if state not in RUN_STATES:
        raise RunControlError(f"run {number}: unknown state {state!r}; known: {RUN_STATES}")
    run = get_run(session, number)
    run.state = state
    run.error = error
    run.stopped_utc = run.stopped_utc or at or utcnow()
    session.flush()
    return run


RUN_END = "run-end"
"""The kind of run control's queued writes (daq.store.durable): a run's end and its automatic
logbook entry, timed when it happened, not when the database took it."""


def run_end(number: int, text: str, state: str = "ended", error: str = "") -> dict:
    """The data of a RUN_END write: run ``number`` ends now in ``state``, logged as ``text``."""
    return {
        "run": number,
        "state": state,
        "error": error,
        "text": text,
        "time_utc": utcnow().isoformat(),
    }


def apply_run_end(session: Session, data: dict) -> None:
    """The applier of RUN_END writes."""
    at = datetime.fromisoformat(data["time_utc"])
    end_run(session, data["run"], data["state"], data["error"], at=at)
    add_logbook(session, "run control", data["text"], data["run"], automatic=True, time_utc=at)


def set_quality(session: Session, number: int, quality: str, reason: str) -> Run:
    """Set a run's data quality ('unchecked', 'good', 'bad') and why."""
    if quality not in QUALITIES:
        raise RunControlError(f"run {number}: unknown quality {quality!r}; known: {QUALITIES}")
    run = get_run(session, number)
    run.quality = quality
    run.quality_reason = reason
    session.flush()
    return run


def by_quality(runs: list[Run], selection: str) -> list[Run]:
    """The runs whose quality ``selection`` ('good', 'usable': not bad, 'all') admits."""
    if selection not in QUALITY_SELECTIONS:
        raise RunControlError(
            f"unknown run selection {selection!r}; known: {tuple(QUALITY_SELECTIONS)}"
        )
    return [r for r in runs if r.quality in QUALITY_SELECTIONS[selection]]


LOGBOOK = "logbook"
"""The kind of a queued automatic logbook entry (daq.store.durable), timed when it was made."""


def logbook_entry(author: str, text: str, run_number: int | None) -> dict:
    """The data of a LOGBOOK write: an automatic entry made now."""
    return {"author": author, "text": text, "run": run_number, "time_utc": utcnow().isoformat()}


def apply_logbook(session: Session, data: dict) -> None:
    """The applier of LOGBOOK writes."""
    at = datetime.fromisoformat(data["time_utc"])
    add_logbook(session, data["author"], data["text"], data["run"], automatic=True, time_utc=at)


def add_logbook(
    session: Session,
    author: str,
    text: str,
    run_number: int | None = None,
    automatic: bool = False,
    time_utc: datetime | None = None,
) -> LogbookEntry:
    """Write a logbook entry (by a shifter, or by the system when ``automatic``), made at
    ``time_utc`` (default now)."""
    entry = LogbookEntry(
        author=author,
        text=text,
        run_number=run_number,
        automatic=automatic,
        time_utc=time_utc or utcnow(),
    )
    session.add(entry)
    session.flush()
    return entry


def add_raw_damage(session: Session, damage: RawDamage, run_number: int | None = None) -> None:
    """Store what a raw-file reader had to skip, one row per damaged region; a region already
    recorded (the same file read again, e.g. replayed under another tag) is not repeated."""
    known = set(
        session.scalars(
            select(RawFileDamage.offset).where(
                RawFileDamage.path == str(damage.path), RawFileDamage.run_number == run_number
            )
        )
    )
    for region in damage.regions:
        if region.offset in known:
            continue
        session.add(
            RawFileDamage(
                run_number=run_number,
                path=str(damage.path),
                offset=region.offset,
                bytes_skipped=region.bytes_skipped,
                batches_read=damage.batches_read,
                last_good_ns=region.last_good_ns,
                resumed_ns=region.resumed_ns,
                reason=region.reason,
            )
        )
    session.flush()
