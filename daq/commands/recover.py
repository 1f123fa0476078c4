"""``nudaq recover RUN``: close by hand a run that a crash left open (``nudaq up`` does it at
start for every run still marked running)."""

from __future__ import annotations

import argparse
import json
import sys

from daq.commands.options import add_system_options, resolve
from daq.control.lock import DataDirLock
from daq.core.errors import RunControlError

RECOVERABLE = ("running", "error", "recovered")
"""States of a run that was not ended cleanly (a recovered run may be recovered again: its
SQL is brought to equal its raw file once more); an ended run whose raw file could not be
closed and linked (a full disk) is recoverable too."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "recover",
        help="close a run a crash left open, from its raw file",
        description="Rebuild a run that was not ended cleanly from its raw pulses file: close "
        "the raw files (end marker, damage recorded), link them in SQL, bring SQL to equal "
        "them, and mark the run recovered. Refused while a system runs on the data directory.",
    )
    p.add_argument("run", type=int, help="run number")
    add_system_options(p)
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # the store and the builder are imported here: every nudaq command loads this module
    from daq.store.rebuild import recover_run
    from daq.store.runs import get_run
    from daq.store.session import make_engine, session_scope, upgrade_database

    config, data_dir, db_url = resolve(args)
    lock = DataDirLock(data_dir)
    engine = make_engine(db_url)
    try:
        upgrade_database(engine)
        with session_scope(engine, readonly=True) as session:
            run_row = get_run(session, args.run)
            state, linked = run_row.state, run_row.raw_file is not None
        if state not in RECOVERABLE and linked:
            raise RunControlError(
                f"run {args.run} is {state} with its raw file linked: nothing to recover"
            )
        report = recover_run(config, engine, data_dir, args.run)
    finally:
        engine.dispose()
        lock.release()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        damage = report["damage"] or "no damage"
        print(f"run {args.run} recovered from {report['raw_file']}: {damage}", file=sys.stdout)
    return 0
