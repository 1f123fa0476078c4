"""``nudaq bench``: throughput and memory figures, each beside its baseline (hardware_sim.bench)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure replay, transport, tagging and live throughput against baselines",
        description="Measure on this machine: the ZeroMQ PUSH/PULL ceiling, the tagging kernel "
        "against numpy searchsorted and pandas merge_asof, end-to-end replay of a synthetic "
        "run of 10^7 pulses and the builder's peak memory, and (without --quick) a replay of "
        "10^8 pulses, the highest pulse rate the live system takes without loss for 60 s and "
        "the time to simulate the TEXONO exposure (4712 h ON + 1250 h OFF). --quick takes "
        "under 2 minutes, the full run under 10.",
    )
    p.add_argument(
        "--quick", action="store_true", help="leave out the 10^8 replay, live, long exposure"
    )
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hardware_sim.bench.run import print_table, require_baselines, run_benchmarks

    require_baselines()
    result = run_benchmarks(quick=args.quick)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0
