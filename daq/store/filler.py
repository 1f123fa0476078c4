"""The spectrum filler: sums the builder's updates and commits them to SQL atomically.

``SpectrumFiller.add`` only adds in memory; ``commit`` writes everything accumulated since
the previous commit in ONE transaction: spectrum bins, exposures, stream bookkeeping and
reactor intervals, so a reader never sees spectra without their live time. Increments are
added to the stored rows with the dialect's ``INSERT ... ON CONFLICT DO UPDATE`` (SQLite and
PostgreSQL), so several commits (or processes) add up exactly. A live run's commits are
queued writes of the builder (daq.store.durable): stored in order, exactly once, whenever the
database answers. A direct commit (a replay's single one) that fails stores nothing of it,
and the increments stay pending for the next attempt.

Every row written carries the filler's ``tag``: the live DAQ fills tag ``""``, a replay its
own tag, and a filler never touches rows of another tag (nor, with a tag, the run's row).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import astuple, fields
from datetime import datetime
from functools import lru_cache

import numpy as np
from sqlalchemy import Connection, Dialect, Engine, Table, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from daq.build.increments import REACTOR_STATES, BuildUpdate, ExposureDelta, StreamDelta
from daq.core.errors import RunControlError
from daq.core.records import CATEGORY_NAMES, LOSS_NAMES, Category
from daq.formats.rawfile import PULSES, RawFileInfo
from daq.store.durable import DurableWriter
from daq.store.models import (
    CoverageGap,
    Exposure,
    RawFile,
    ReactorInterval,
    Run,
    SpectrumBin,
    StreamStat,
    utcnow,
)
from daq.store.session import upsert, writer

log = logging.getLogger(__name__)

_EXPOSURE_FIELDS = [f.name for f in fields(ExposureDelta)]
_STREAM_FIELDS = [f.name for f in fields(StreamDelta)]
_BIN_KEYS = ("run_id", "tag", "reactor", "category", "bin")
_REACTOR_NAMES = np.array(REACTOR_STATES, dtype=object)
_CATEGORY_NAMES = np.array([CATEGORY_NAMES[c] for c in Category], dtype=object)
_CATEGORY_ORDER = np.argsort(_CATEGORY_NAMES)
"""Categories in the order of their names: spectrum bins are written in the table's key order
(run, tag, reactor, category, bin), so that SQLite appends to its clustered key."""


ROWS_PER_STATEMENT = {"sqlite": 20}
"""Rows in one multi-row INSERT, by dialect. On SQLite a statement per row costs about twice
as much per row (a replay's final commit holds tens of thousands of spectrum bins); more
than ~20 rows gain nothing and take longer to compile. PostgreSQL's driver pipelines
one-row statements and is slower with long ones (measured)."""


@lru_cache(maxsize=64)
def _upsert_sql(
    dialect: Dialect,
    table: Table,
    keys: tuple[str, ...],
    columns: tuple[str, ...],
    add: tuple[str, ...],
    replace: tuple[str, ...],
    n_rows: int,
) -> tuple[str, list[str] | None, list[int] | None]:
    """The SQL of an upsert of ``n_rows`` rows, compiled once, and how its parameters are
    taken from the rows' flattened values: by name (a driver with named parameters: the
    names), or by position (None; the positions in the driver's order when not in order)."""
    names = [f"{c}_{i}" for i in range(n_rows) for c in columns]
    rows = [{c: bindparam(f"{c}_{i}") for c in columns} for i in range(n_rows)]
    stmt = upsert(dialect, table).values(rows)
    updates = {c: table.c[c] + stmt.excluded[c] for c in add}
    updates.update({c: stmt.excluded[c] for c in replace})
    compiled = stmt.on_conflict_do_update(index_elements=list(keys), set_=updates).compile(
        dialect=dialect
    )
    if not compiled.positional:
        return compiled.string, names, None
    where = {name: i for i, name in enumerate(names)}
    order = [where[name] for name in compiled.positiontup]
    return compiled.string, None, None if order == sorted(order) else order


def _upsert(
    conn: Connection,
    table: Table,
    keys: Sequence[str],
    columns: Sequence[str],
    rows: list[tuple] | np.ndarray,
    add: Sequence[str],
    replace: Sequence[str] = (),
) -> None:
    """Insert ``rows`` (tuples, or a 2-D object array, in ``columns`` order); where the key
    exists, add the ``add`` columns and overwrite ``replace``.

    Rows go ROWS_PER_STATEMENT to a statement, the rest one to a statement (so only two
    statements are ever compiled), each kind in one executemany, the values handed to the
    database driver as they are: every column is a plain integer or string, which needs no
    parameter processing. A statement's parameters are a row of the rows reshaped, so that
    tens of thousands of spectrum bins cost no Python loop per value.
    """
    spec = (tuple(keys), tuple(columns), tuple(add), tuple(replace))
    per = ROWS_PER_STATEMENT.get(conn.dialect.name, 1)
    values = rows if isinstance(rows, np.ndarray) else np.array(rows, dtype=object)
    full = len(values) // per * per
    for group, n in ((values[:full], per), (values[full:], 1)):
        if not len(group):
            continue
        sql, names, order = _upsert_sql(conn.dialect, table, *spec, n)
        flat = group.reshape(-1, n * len(columns))
        if names is not None:
            params = [dict(zip(names, row, strict=True)) for row in flat.tolist()]
        else:
            params = list(map(tuple, (flat if order is None else flat[:, order]).tolist()))
        conn.exec_driver_sql(sql, params)


SPECTRUM = "spectrum"
"""The kind of the builder's queued writes (daq.store.durable): one increment each."""


class SpectrumFiller:
    """Accumulates BuildUpdates of one run and commits them under one tag: through the
    process's queued writes ``writes`` (a live run: never waits for the database), or
    directly, in the caller's thread (a replay, a long simulated exposure)."""

    def __init__(
        self,
        engine: Engine,
        run_number: int,
        tag: str,
        n_bins: int,
        writes: DurableWriter | None = None,
    ) -> None:
        self.engine = engine
        self.run_number = run_number
        self.tag = tag
        self.n_bins = n_bins
        self.writes = writes
        self._pending = BuildUpdate.empty(n_bins)
        self._committed = {state: ExposureDelta() for state in REACTOR_STATES}
        """Exposure committed so far: live time is not additive, it is written from totals."""

    def add(self, update: BuildUpdate) -> None:
        """Accumulate an update in memory (nothing is written)."""
        if update.hist.shape != self._pending.hist.shape:
            raise ValueError(
                f"run {self.run_number}: update histogram shape {update.hist.shape},"
                f" filler expects {self._pending.hist.shape}"
            )
        self._pending.merge(update)

    def commit(self) -> bool:
        """Write the accumulated increments in one transaction; False if there were none."""
        if self._pending.is_empty:
            return False
        self._store(self._increment())
        return True

    def replace(self) -> None:
        """Write the accumulated increments as the run's whole result under this tag: the
        one transaction that stores them first deletes what SQL held of it (a run rebuilt
        from its raw file, daq.store.rebuild). Queued like every write of a live run, so
        whatever the run's earlier writes still waiting are, they are stored before it and
        replaced by it."""
        increment = self._increment()
        increment["replace"] = True
        self._store(increment)

    def close_run(self, raw_files: list[RawFileInfo], end_ns: int | None = None) -> None:
        """Final commit plus the run's raw files (and, for tag "", the run's row), in one
        transaction.

        ``end_ns`` (DAQ clock) closes the open reactor interval; without it the last
        interval stays open-ended, meaning "until the end of the run".
        """
        increment = self._increment()
        increment["close"] = {
            "end_ns": end_ns,
            "raw_files": [[f.kind, str(f.path), f.sha256, f.bytes] for f in raw_files],
            "stopped_utc": utcnow().isoformat(),
        }
        self._store(increment)
        log.info(
            "run %d (tag %r) closed with raw files %s",
            self.run_number,
            self.tag,
            [str(f.path) for f in raw_files],
        )

    def _increment(self) -> dict:
        """The pending increments as one write's data (see ``write_increment``): nonzero bins
        (reactor, category and bin indices, counts), exposures with the live time of the
        totals, stream bookkeeping, gaps and reactor changes."""
        pending = self._pending
        reactor, category, bins = np.nonzero(pending.hist[:, _CATEGORY_ORDER])
        category = _CATEGORY_ORDER[category]
        return {
            "run": self.run_number,
            "tag": self.tag,
            "bins": [reactor, category, bins, pending.hist[reactor, category, bins]],
            "exposure": [
                [state, *astuple(delta), self._total_live_ns(state, delta)]
                for state, delta in pending.exposure.items()
                if delta != ExposureDelta()
            ],
            "streams": [
                [name, *astuple(delta)]
                for name, delta in pending.streams.items()
                if delta != StreamDelta()
            ],
            "gaps": [
                [gap.stream, LOSS_NAMES[gap.reason], gap.start_ns, gap.end_ns]
                for gap in pending.gaps
            ],
            "reactor_changes": [
                [change.t_ns, change.on, change.power_MW]
                for change in sorted(pending.reactor_changes, key=lambda c: c.t_ns)
            ],
        }

    def _store(self, increment: dict) -> None:
        """Queue the increment, or write it now; then count the pending increments as
        committed (a direct write that fails leaves them pending for the next attempt)."""
        if self.writes is not None:
            self.writes.submit(SPECTRUM, increment)
        else:
            with writer(self.engine).begin() as conn:
                write_increment(conn, increment)
        for state, delta in self._pending.exposure.items():
            self._committed[state].add(delta)
        self._pending = BuildUpdate.empty(self.n_bins)

    def _total_live_ns(self, state: str, delta: ExposureDelta) -> int:
        """Live time (ns) of a reactor state once ``delta`` is added to what is committed."""
        total = ExposureDelta()
        total.add(self._committed[state])
        total.add(delta)
        return total.live_ns


def apply_increment(session: Session, data: dict) -> None:
    """The applier of SPECTRUM writes (daq.store.durable)."""
    write_increment(session.connection(), data)


def write_increment(conn: Connection, increment: dict) -> None:
    """Store one increment of a run's results (``SpectrumFiller._increment``, also read back
    from a journal: lists for arrays) in the caller's transaction; with ``replace``, instead
    of what the run's results under the tag were; with its ``close``, also the run's raw
    files and, for tag "", the run's row."""
    run_id = conn.scalar(select(Run.id).where(Run.number == increment["run"]))
    if run_id is None:
        raise RunControlError(
            f"run {increment['run']} is not in the database: cannot store its spectra"
        )
    tag = increment["tag"]
    key = {"run_id": run_id, "tag": tag}
    if increment.get("replace"):
        for model in (SpectrumBin, Exposure, StreamStat, CoverageGap, ReactorInterval):
            table = model.__table__
            conn.execute(delete(table).where(table.c.run_id == run_id, table.c.tag == tag))
    reactor, category, bins, counts = (np.asarray(a, dtype=np.int64) for a in increment["bins"])
    rows = np.empty((len(bins), len(_BIN_KEYS) + 1), dtype=object)
    rows[:, 0] = run_id
    rows[:, 1] = tag
    rows[:, 2] = _REACTOR_NAMES[reactor]
    rows[:, 3] = _CATEGORY_NAMES[category]
    rows[:, 4] = bins
    rows[:, 5] = counts
    _upsert(conn, SpectrumBin.__table__, _BIN_KEYS, (*_BIN_KEYS, "counts"), rows, add=("counts",))
    _upsert(
        conn,
        Exposure.__table__,
        ("run_id", "tag", "reactor"),
        ("run_id", "tag", "reactor", *_EXPOSURE_FIELDS, "live_ns"),
        [(run_id, tag, *entry) for entry in increment["exposure"]],
        add=_EXPOSURE_FIELDS,
        replace=("live_ns",),
    )
    if increment["gaps"]:
        conn.execute(
            CoverageGap.__table__.insert(),
            [
                {**key, "stream": stream, "reason": reason, "start_ns": start, "end_ns": end}
                for stream, reason, start, end in increment["gaps"]
            ],
        )
    _upsert(
        conn,
        StreamStat.__table__,
        ("run_id", "tag", "stream"),
        ("run_id", "tag", "stream", *_STREAM_FIELDS),
        [(run_id, tag, *entry) for entry in increment["streams"]],
        add=_STREAM_FIELDS,
    )
    for t_ns, on, power_MW in increment["reactor_changes"]:
        _close_interval(conn, key, t_ns)
        conn.execute(
            ReactorInterval.__table__.insert().values(
                **key,
                reactor=REACTOR_STATES[int(on)],
                start_ns=t_ns,
                end_ns=None,
                power_MW=power_MW,
            )
        )
    close = increment.get("close")
    if close is not None:
        _close_run(conn, key, close)


def _close_run(conn: Connection, key: dict, close: dict) -> None:
    """The end of a run's increments: the open reactor interval, its raw files, its row."""
    if close["end_ns"] is not None:
        _close_interval(conn, key, close["end_ns"])
    raw_files = close["raw_files"]
    _upsert(
        conn,
        RawFile.__table__,
        ("run_id", "tag", "kind"),
        ("run_id", "tag", "kind", "path", "sha256", "bytes"),
        [(key["run_id"], key["tag"], *f) for f in raw_files],
        add=(),
        replace=("path", "sha256", "bytes"),
    )
    if key["tag"] != "":
        return
    stopped = datetime.fromisoformat(close["stopped_utc"])
    values = {"stopped_utc": func.coalesce(Run.stopped_utc, stopped)}
    pulses = next((f for f in raw_files if f[0] == PULSES), None)
    if pulses is not None:
        _, path, sha256, size = pulses
        values |= {"raw_file": path, "raw_sha256": sha256, "raw_bytes": size}
    conn.execute(update(Run).where(Run.id == key["run_id"]).values(**values))


def _close_interval(conn: Connection, key: dict, t_ns: int) -> None:
    conn.execute(
        update(ReactorInterval)
        .where(
            ReactorInterval.run_id == key["run_id"],
            ReactorInterval.tag == key["tag"],
            ReactorInterval.end_ns.is_(None),
        )
        .values(end_ns=t_ns)
    )
