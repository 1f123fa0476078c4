"""``nudaq replay``: re-run recorded raw files through the live builder and filling."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from daq.core.config import load_config
from daq.core.errors import ConfigError, RawDigestError, RawHeaderError
from daq.core.paths import data_dir as resolve_data_dir
from daq.core.paths import db_url, require_data_dir

EXIT_DAMAGED = 1
"""Exit status when a file was damaged: replayed around the damage, damage recorded."""
EXIT_UNPROVEN = 1
"""Exit status when a file's header fails its checksum or an intact file's SHA-256 is not
the one the database holds: nothing of it is replayed."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "replay",
        help="replay recorded runs through the builder and spectrum filling",
        description="Stream the recorded batches of raw files (or of run numbers, found in the "
        "runs table) through the live builder into the database. Without --config/--tag the "
        "results are those of the live run, bit for bit; with a new configuration they go "
        "under a tag. Exit status: 0 done, 1 a file was damaged (everything intact was "
        "replayed, the damage is recorded with the run) or does not prove itself (its header "
        "fails its checksum, or the database holds another SHA-256 for it: not replayed), "
        "2 error.",
    )
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_RUN", help="raw pulses file or run")
    p.add_argument("--db", help="database URL (default: SQLite file in the data directory)")
    p.add_argument("--config", type=Path, help="new configuration (results under a tag)")
    p.add_argument(
        "--data-dir", type=Path, help="data directory for logs (default: $NUDAQ_DATA_DIR)"
    )
    p.add_argument(
        "--speed", default="max", help="max (default), realtime, or a factor of real time"
    )
    p.add_argument("--tag", help="SQL tag of the results (default: '' or derived, see docs)")
    p.add_argument("--scan", metavar="KEY=V1,V2,...", help="one tag per value, one pass")
    p.add_argument("--shuffle-seed", type=int, help="readers permute their messages (tests)")
    p.add_argument(
        "--chunk-pulses",
        type=int,
        help="largest message (pulses, default 131072); 0 sends the recorded batches as they are",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def _speed(text: str) -> float:
    if text == "max":
        return 0.0
    if text == "realtime":
        return 1.0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"--speed {text!r}: expected max, realtime or a positive factor")
    return value


class _Bar:
    """A rich progress bar (pulses, rate, ETA) on a terminal."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("replay"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} pulses"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            transient=True,
        )
        self.task = None

    def __call__(self, done: int, total: int) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("replay", total=total, rate="")
        speed = self.progress.tasks[0].speed
        rate = f"{speed / 1e6:.1f} M/s" if speed else ""
        self.progress.update(self.task, completed=done, total=total, rate=rate)

    def stop(self) -> None:
        if self.task is not None:
            self.progress.stop()
            self.task = None


def _print_table(results) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for r in results:
        table = Table(title=f"replay of run {r.run}", caption=r.file)
        table.add_column("stream")
        table.add_column("pulses", justify="right")
        table.add_column("lost", justify="right")
        for name, n in r.pulses.items():
            table.add_row(name, f"{n:,}", str(r.lost.get(name, "")))
        console.print(table)
        events = ", ".join(f"{k} {v}" for k, v in r.events.items())
        console.print(f"tags {r.tags}; events under {r.tags[0]!r}: {events}")
        console.print(
            f"{sum(r.pulses.values()):,} pulses in {r.wall_s:.2f} s: "
            f"{r.pulses_per_s / 1e6:.2f} M pulses/s; builder peak RSS "
            f"{r.builder_peak_rss_mb:.0f} MB"
        )
        console.print(
            "SHA-256 verified against the database"
            if r.sha256_verified
            else "SHA-256 not verified (the database holds none for this file, or it is damaged)"
        )
        if r.scan:
            console.print(_scan_table(r))


def _scan_table(result):
    from rich.table import Table

    table = Table(title="scan")
    for column in ("value", "tag", "candidate rate (Hz)", "P(AC)", "P(CRV)", "P(any)", "bkg (cpd)"):
        table.add_column(column)
    for row in result.scan:
        veto = row["accidental_veto"] or {}
        bkg = row["background_cpd"]

        def p(name, veto=veto):
            return f"{veto[name]['value']:.4f}±{veto[name]['error']:.4f}" if veto else "n/a"

        rate = row["candidate_rate_hz"]
        table.add_row(
            str(row["value"]),
            row["tag"],
            "n/a" if rate is None else f"{rate:.4g}",
            p("ac"),
            p("crv"),
            p("any"),
            "n/a" if bkg is None else f"{bkg['value']:.3g}±{bkg['error']:.2g}",
        )
    return table


def run(args: argparse.Namespace) -> int:
    from daq.replay.runner import CHUNK_PULSES, ReplayOptions, damage_message, replay
    from daq.replay.scan import parse_scan

    data_dir = require_data_dir(resolve_data_dir(args.data_dir))
    config = load_config(args.config) if args.config else None
    options = ReplayOptions(
        data_dir=data_dir,
        db_url=db_url(args.db, data_dir),
        config=config,
        tag=args.tag,
        scan=parse_scan(args.scan, config or load_config(None)) if args.scan else None,
        speed=_speed(args.speed),
        shuffle_seed=args.shuffle_seed,
        chunk_pulses=CHUNK_PULSES if args.chunk_pulses is None else max(args.chunk_pulses, 0),
    )
    bar = _Bar() if sys.stderr.isatty() and not args.json else None
    try:
        results = replay(args.inputs, options, bar)
    except (RawHeaderError, RawDigestError) as err:
        if bar is not None:
            bar.stop()
        print(f"nudaq replay: error: {err}", file=sys.stderr)
        return EXIT_UNPROVEN
    finally:
        if bar is not None:
            bar.stop()
    if options.scan is not None:
        from online.analysis.scan import add_scan_figures  # scipy: only for scans

        add_scan_figures(results, options)
    if args.json:
        body = [r.to_json() for r in results]
        print(json.dumps(body[0] if len(body) == 1 else body, indent=2))
    else:
        _print_table(results)
    damaged = [r for r in results if not r.intact]
    for r in damaged:
        print(f"nudaq replay: {damage_message(r)}", file=sys.stderr)
    return EXIT_DAMAGED if damaged else 0
