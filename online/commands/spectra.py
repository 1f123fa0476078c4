"""``nudaq spectra``: the stored spectra of selected runs, as JSON or CSV."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from daq.commands.options import add_system_options, resolve
from daq.core.records import CATEGORY_NAMES


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "spectra",
        help="print stored spectra",
        description="Sum the spectra of the selected runs (default: all runs) for one reactor "
        "state (default: both) and one category.",
    )
    add_system_options(p, config=False)
    p.add_argument("--run", help="run number or list/range such as 3-7,9 (default: all runs)")
    p.add_argument("--reactor", choices=("on", "off"), help="reactor state (default: both)")
    p.add_argument("--category", choices=tuple(CATEGORY_NAMES.values()), default="all")
    p.add_argument("--tag", default="", help="replay tag (default: the live results)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object")
    fmt.add_argument("--csv", action="store_true", help="CSV: bin_low_keV,bin_high_keV,counts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from daq.store.session import make_engine, session_scope
    from daq.store.spectra import load_spectrum, select_runs

    _, _, db_url = resolve(args)
    with session_scope(make_engine(db_url)) as session:
        runs = select_runs(session, args.run, tag=args.tag)
        spectrum = load_spectrum(session, runs, args.reactor, args.category, tag=args.tag)
    edges = spectrum.bin_edges_keV
    if args.json:
        print(
            json.dumps(
                {
                    "runs": spectrum.runs,
                    "reactor": args.reactor or "both",
                    "category": args.category,
                    "tag": args.tag,
                    "bin_edges_keV": [round(float(e), 9) for e in edges],
                    "counts": [int(c) for c in spectrum.counts],
                    "live_time_s": spectrum.live_ns / 1e9,
                }
            )
        )
    elif args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["bin_low_keV", "bin_high_keV", "counts"])
        writer.writerows(
            (f"{lo:g}", f"{hi:g}", int(c))
            for lo, hi, c in zip(edges[:-1], edges[1:], spectrum.counts, strict=True)
        )
    else:
        total = int(spectrum.counts.sum())
        print(
            f"runs {spectrum.runs}: {args.category} {args.reactor or 'on+off'}: "
            f"{total} counts in {spectrum.live_ns / 1e9:.1f} s live"
        )
    return 0
