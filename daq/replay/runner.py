"""Replay of recorded runs through the live pipeline: reader -> ZeroMQ -> builder -> SQL.

For each raw pulses file (``replay_file``) the replay starts, as separate OS processes, the
builder (``python -m daq.processes.builder``, the live code, in replay mode: no raw files, one SQL
commit at the end) and the reader of every stream (``python -m daq.replay.plan``), on
private ipc endpoints, and acts as run control: ``begin`` with the recorded run number, the
reader streams the batches, ``end`` once it is done. Nothing is built outside the builder
process, so a replay and the live run share every line of building and filling code.

Results and tags (the ``tag`` column of the SQL tables):

- no ``config`` and no ``tag``: the recorded configuration, tag "" (what the live run
  filled). Into a database without the run, the run row is created from the file's
  configuration snapshot and the spectra, exposures and counts are bit-identical to the
  live run's. Into the database that already holds the live results: ReplayError asking for
  a tag (the original is never overwritten).
- ``config`` (a new configuration): results under ``tag``, by default
  ``config-<first 8 hex of the configuration's SHA-256>``.
- ``scan`` (daq.replay.scan): one tag per value, ``<tag or "scan">:<key>=<value>``.

A tag that already has results for the run is refused. The replay's configuration and
tags are written to the logbook.

Reading: the reader process starts with the builder; it indexes and verifies the whole
file in one numba pass (``daq.formats.rawindex.scan_pulses``) and posts on the progress board
(daq.replay.board) whether the file is intact. An intact file is read from that index, re-chunked
into large messages (see daq.replay.plan). A damaged file is read by RawReader, batch by
batch, everything it recovers before and after the damage; what was skipped is reported in
the result (``damage``) and stored with the run (table raw_file_damage).

Proof of the file: opening it verifies its header (daq.formats.rawfile: RawHeaderError when
the recorded run, configuration or versions fail their checksum). When the database holds
the SHA-256 of the run's pulses file (table raw_files, written when the live run closed it;
found by the run number the file records), the replay hashes the file in a background
thread while its processes start, and compares before the builder begins the run, so
streaming is not slowed and nothing of an altered file is stored: an intact file whose
digest differs is a RawDigestError; a damaged one is replayed and reports
``sha256_verified`` false (true only when the digests agree).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, exists, select

from daq.control.runcontrol import RunControl
from daq.control.supervisor import Supervisor
from daq.core.config import Config
from daq.core.errors import NudaqError, RawDigestError, RawFileError, RunControlError
from daq.core.records import RUN_STREAMS, STREAM_NAMES
from daq.formats.rawfile import PULSES, RawDamage, RawReader, open_pulses, raw_path
from daq.replay.board import (
    SENT_MESSAGES,
    SENT_PULSES,
    file_facts,
    open_board,
    readers_done,
    readers_ready,
    release_readers,
    start_readers,
)
from daq.replay.scan import Scan
from daq.store.models import Exposure, RawFile, Run, SpectrumBin, StreamStat
from daq.store.runs import add_logbook, add_raw_damage, create_run, end_run
from daq.store.session import make_engine, session_scope, upgrade_database

log = logging.getLogger(__name__)

BUILDER = "replay-builder"
READER = "replay-reader"
CHUNK_PULSES = 1 << 17
"""Largest message the reader sends (pulses): 2 MB, few enough per second to cost nothing."""
RECV_HWM = 4
"""Messages queued in the builder (bounds the builder's memory)."""
STARTUP_TIMEOUT_S = 60.0
END_TIMEOUT_S = 120.0


class ReplayError(NudaqError):
    """A replay cannot be done as asked (tag conflict, unknown run, no raw file)."""


@dataclass
class ReplayOptions:
    """What ``nudaq replay`` was asked (see module doc); speed 0 = as fast as possible."""

    data_dir: Path
    db_url: str
    config: Config | None = None
    tag: str | None = None
    scan: Scan | None = None
    speed: float = 0.0
    shuffle_seed: int | None = None
    chunk_pulses: int = CHUNK_PULSES


@dataclass
class ReplayResult:
    """What one replayed file gave (the --json summary).

    ``wall_s``: from the reader's start signal until the builder committed the run (s);
    ``pulses_per_s`` is over that time. ``built_s``: until the builder had built every
    pulse, before that final commit (s). ``stream_s``: until the reader had sent all (s).
    The processes' start-up and the reader's verify pass come before and are in none.
    ``sha256_verified``: the file's SHA-256 equals the one the database holds for the run.
    """

    file: str
    run: int
    tags: list[str]
    pulses: dict[str, int]
    events: dict[str, int]
    lost: dict[str, int]
    wall_s: float
    pulses_per_s: float
    built_s: float
    stream_s: float
    messages: dict[str, int]
    builder_peak_rss_mb: float
    intact: bool
    sha256_verified: bool = False
    damage: list[dict] = field(default_factory=list)
    by_tag: dict[str, dict] = field(default_factory=dict)
    scan: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def resolve_inputs(items: list[str], engine: Engine) -> list[Path]:
    """Raw pulses files of the arguments: a run number (via the runs table), a pulses file,
    or a run's file prefix (``.../raw/run000012``)."""
    files = []
    for item in items:
        if item.isdigit():
            with session_scope(engine, readonly=True) as session:
                run = session.scalar(select(Run).where(Run.number == int(item)))
            if run is None:
                raise ReplayError(f"run {item} is not in the database")
            if not run.raw_file:
                raise ReplayError(f"run {item} has no raw file recorded in the database")
            files.append(Path(run.raw_file))
            continue
        path = Path(item)
        if not path.exists() and raw_path(path, PULSES).exists():
            path = raw_path(path, PULSES)
        if not path.exists():
            raise RawFileError(f"{path}: no such file (and not a run number)")
        files.append(path)
    return files


def variants(options: ReplayOptions, recorded: Config) -> list[dict]:
    """The builder's variants ({"tag", "overrides"}) for these options (see module doc)."""
    if options.scan is not None:
        return options.scan.variants(options.tag or "scan")
    tag = options.tag
    if tag is None and options.config is not None:
        if options.config.snapshot() != recorded.snapshot():
            tag = "config-" + hashlib.sha256(options.config.snapshot().encode()).hexdigest()[:8]
    return [{"tag": tag or ""}]


def _prepare_run(
    engine: Engine, reader: RawReader, recorded: Config, tags: list[str], note: str
) -> None:
    """Create the run row from the file if the database lacks it; refuse used tags."""
    with session_scope(engine) as session:
        run = session.scalar(select(Run).where(Run.number == reader.run))
        if run is None:
            run = create_run(session, reader.run, recorded, comment=f"replayed from {reader.path}")
            run.raw_file = str(reader.path)
            run.raw_bytes = reader.path.stat().st_size
            end_run(session, reader.run)
        for tag in tags:
            used = session.scalar(
                select(
                    exists().where(Exposure.run_id == run.id, Exposure.tag == tag)
                    | exists().where(SpectrumBin.run_id == run.id, SpectrumBin.tag == tag)
                    | exists().where(StreamStat.run_id == run.id, StreamStat.tag == tag)
                )
            )
            if used and tag == "":
                raise ReplayError(
                    f"run {reader.run} already has its live results in this database: "
                    "replay under a tag (--tag NAME) or into another database (--db URL)"
                )
            if used:
                raise ReplayError(
                    f"run {reader.run} already has results under tag {tag!r}: choose another tag"
                )
        add_logbook(session, "replay", note, run_number=reader.run, automatic=True)


def _damage_rows(damage: RawDamage | None) -> list[dict]:
    if damage is None:
        return []
    return [
        {
            "offset": r.offset,
            "bytes_skipped": r.bytes_skipped,
            "last_good_ns": r.last_good_ns,
            "resumed_ns": r.resumed_ns,
            "reason": r.reason,
        }
        for r in damage.regions
    ]


class _Session:
    """The processes and sockets of one file's replay, in a private socket directory."""

    def __init__(self, options: ReplayOptions, base: Config, engine: Engine) -> None:
        self.options = options
        self.tmp = Path(tempfile.mkdtemp(prefix="nqr", dir="/tmp"))  # ipc paths stay short
        self.config = base.model_copy(deep=True)
        for name in ("builder_data", "run_control", "transitions", "monitor"):
            setattr(self.config.network, name, f"ipc://{self.tmp}/{name}")
        config_file = self.tmp / "config.json"
        config_file.write_text(self.config.snapshot())
        self.sup = Supervisor(options.data_dir)
        self.rc = RunControl(self.config, options.data_dir, engine)
        self.builder = self.sup.spawn_service(
            BUILDER,
            "builder",
            "--config",
            str(config_file),
            "--data-dir",
            str(options.data_dir),
            "--db",
            options.db_url,
            "--name",
            BUILDER,
            "--recv-hwm",
            str(RECV_HWM),
        )
        self.readers: list = []

    def alive(self) -> None:
        """Raise RunControlError if the builder or a reader failed."""
        for child in [self.builder, *self.readers]:
            code = child.popen.poll()
            if code is not None and (code != 0 or child is self.builder):
                raise RunControlError(
                    f"{child.name} (pid {child.pid}) exited with code {code}; see "
                    f"{self.options.data_dir / 'logs' / (child.name + '.log')}"
                )

    def start_reader(self, path: Path, board: Path) -> None:
        args = [
            "--file",
            str(path),
            "--endpoint",
            self.config.endpoint("builder_data", self.options.data_dir),
            "--board",
            str(board),
            "--chunk-pulses",
            str(min(self.options.chunk_pulses, self.config.builder.max_batch_pulses // 2)),
            "--speed",
            str(self.options.speed),
            "--data-dir",
            str(self.options.data_dir),
        ]
        if self.options.shuffle_seed is not None:
            args += ["--shuffle-seed", str(self.options.shuffle_seed)]
        streams = ",".join(STREAM_NAMES[s] for s in RUN_STREAMS)
        self.readers.append(
            self.sup.spawn_service(READER, "replay-reader", *args, "--streams", streams)
        )

    def close(self) -> None:
        try:
            if BUILDER in self.rc.processes and self.builder.popen.poll() is None:
                self.rc.transition(BUILDER, "exit", 10.0)
        except RunControlError as err:
            log.warning("builder did not exit cleanly: %s", err)
        finally:
            self.sup.stop_all()
            self.rc.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


def _wait_until_ready(session: _Session, board: np.ndarray) -> None:
    """Until the reader has verified the file and prepared its first message."""
    while not readers_ready(board):
        session.alive()
        session.rc.pump(10)


def _start(session: _Session, board: np.ndarray) -> float:
    """Wait until the reader is ready, start it; the start time (monotonic s)."""
    _wait_until_ready(session, board)
    start_readers(board)
    return time.monotonic()


def _recorded_digest(engine: Engine, run: int) -> tuple[str, str] | None:
    """(SHA-256, path) the database holds for the pulses file of the live recording of
    ``run`` (table raw_files), or None."""
    with session_scope(engine, readonly=True) as session:
        row = session.execute(
            select(RawFile.sha256, RawFile.path)
            .join(Run, Run.id == RawFile.run_id)
            .where(Run.number == run, RawFile.kind == PULSES, RawFile.tag == "")
        ).first()
    return None if row is None else (row.sha256, row.path)


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _hash_in_background(path: Path) -> Future[str]:
    """The SHA-256 (hex) of a file, computed in a thread of its own (hashlib releases the
    GIL) while the replay's processes start."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-sha256")
    try:
        return pool.submit(_file_sha256, path)
    finally:
        pool.shutdown(wait=False)


def _verify_digest(
    session: _Session,
    board: np.ndarray,
    reader: RawReader,
    digest: Future[str],
    recorded: tuple[str, str],
) -> bool:
    """Whether the file hashes to the recorded (SHA-256, path), once the reader's verify
    pass and the hash are done; RawDigestError if the file is intact and does not."""
    _wait_until_ready(session, board)
    while not digest.done():
        session.alive()
        session.rc.pump(10)
    try:
        actual = digest.result()
    except OSError as err:
        raise RawFileError(f"cannot read {reader.path} to hash it: {err.strerror}") from None
    expected, recorded_path = recorded
    if actual == expected:
        return True
    _, intact = file_facts(board)
    if intact:
        raise RawDigestError(
            f"{reader.path}: intact, but its SHA-256 {actual} differs from {expected}, the one"
            f" the database holds for the pulses file of run {reader.run} ({recorded_path}):"
            " the file was altered after it was recorded, or is another recording"
        )
    log.warning("%s: damaged, SHA-256 %s, not the recorded %s", reader.path, actual, expected)
    return False


def _wait_for_readers(session: _Session, board: np.ndarray, total: int, progress) -> None:
    """Until the reader has handed all its messages to ZeroMQ (pumping run control,
    showing progress)."""
    while not readers_done(board):
        session.alive()
        session.rc.pump(5)
        if progress is not None:
            progress(int(board[:-1, SENT_PULSES].sum()), total)


def replay_file(path: Path, options: ReplayOptions, engine: Engine, progress=None) -> ReplayResult:
    """Replay one raw pulses file (see module doc); ``progress(done, total)`` is called with
    pulses sent so far."""
    reader = open_pulses(path)  # verifies the header (RawHeaderError)
    recorded = reader.config
    digest_row = _recorded_digest(engine, reader.run)
    digest = None if digest_row is None else _hash_in_background(reader.path)
    base = options.config or recorded
    wanted = variants(options, recorded)
    tags = [v["tag"] for v in wanted]
    note = (
        f"replay of run {reader.run} from {path} under tag(s) {', '.join(map(repr, tags))}"
        f" with configuration {hashlib.sha256(base.snapshot().encode()).hexdigest()[:12]}"
        + (f", scanning {options.scan.key}" if options.scan else "")
    )
    session = _Session(options, base, engine)  # the builder and the reader start up together
    try:
        _prepare_run(engine, reader, recorded, tags, note)
        board_path = session.tmp / "board.npy"
        board = open_board(board_path, len(RUN_STREAMS))
        session.start_reader(path, board_path)  # it verifies the file, then waits for start
        session.rc.wait_for_processes([BUILDER], STARTUP_TIMEOUT_S, session.alive)
        verified = digest is not None and _verify_digest(session, board, reader, digest, digest_row)
        session.rc.transition(
            BUILDER,
            "begin",
            STARTUP_TIMEOUT_S,
            session.alive,
            run=reader.run,
            replay=True,
            variants=wanted,
            streams=[STREAM_NAMES[s] for s in RUN_STREAMS],
        )
        start = _start(session, board)
        total, intact = file_facts(board)
        _wait_for_readers(session, board, total, progress)
        stream_s = time.monotonic() - start
        expect = {STREAM_NAMES[s]: int(board[i, SENT_MESSAGES]) for i, s in enumerate(RUN_STREAMS)}
        summary = session.rc.transition(
            BUILDER, "end", END_TIMEOUT_S, session.alive, run=reader.run, expect=expect
        )
        wall = time.monotonic() - start
        release_readers(board)
    finally:
        session.close()
    damage = None if intact else reader.damage  # its first access reads the file
    if damage is not None:
        with session_scope(engine) as db:
            add_raw_damage(db, damage, reader.run)
    pulses = {STREAM_NAMES[s]: int(board[i, SENT_PULSES]) for i, s in enumerate(RUN_STREAMS)}
    result = ReplayResult(
        file=str(path),
        run=reader.run,
        tags=tags,
        pulses=pulses,
        events=summary["events"],
        lost=summary["lost"],
        wall_s=wall,
        pulses_per_s=sum(pulses.values()) / wall if wall > 0 else 0.0,
        built_s=summary["built_monotonic_s"] - start,
        stream_s=stream_s,
        messages=expect,
        builder_peak_rss_mb=summary.get("peak_rss_mb", 0.0),
        intact=intact,
        sha256_verified=verified,
        damage=_damage_rows(damage),
        by_tag=summary.get("tags", {}),
        summary=summary,
    )
    if options.scan is not None:
        result.scan = [
            {"value": value, "tag": tag}
            for value, tag in zip(options.scan.values, tags, strict=True)
        ]
    return result


def replay(files: list[str], options: ReplayOptions, progress=None) -> list[ReplayResult]:
    """Replay every file or run number in turn (see module doc)."""
    engine = make_engine(options.db_url)
    try:
        upgrade_database(engine)
        paths = resolve_inputs(files, engine)
        return [replay_file(p, options, engine, progress) for p in paths]
    finally:
        engine.dispose()


def damage_message(result: ReplayResult) -> str:
    """One clear paragraph about what a damaged file lost."""
    missing = result.summary.get("missing_batches", 0)
    lines = [
        f"{result.file}: damaged raw file; everything intact was replayed."
        f" Skipped ({missing} batches missing in the streams' sequences):"
    ]
    for r in result.damage:
        lines.append(
            f"  {r['bytes_skipped']} bytes at offset {r['offset']}"
            f" (DAQ time {r['last_good_ns']} .. {r['resumed_ns']} ns): {r['reason']}"
        )
    lines.append(f"  recorded in the database (raw_file_damage, run {result.run})")
    return "\n".join(lines)
