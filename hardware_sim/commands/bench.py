"""``nudaq bench``: throughput and memory figures, each beside its baseline (hardware_sim.bench)."""

from __future__ import annotations

import argparse
import json
import math

from daq.core.errors import NudaqError

SOAK_MINUTES = 10.0
"""Length of the soak unless --soak-minutes says (wall minutes)."""
SOAK_SPEED = 10.0
"""Clock speed-up of the soak unless --soak-speed says (x real time)."""
MIN_SOAK_MINUTES = 0.5
"""A shorter soak leaves too few samples after its warm-up for the fits."""


def _number(text: str, least: float, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= least and value > 0):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def _minutes(text: str) -> float:
    return _number(text, MIN_SOAK_MINUTES, f"at least {MIN_SOAK_MINUTES:g} minutes")


def _speed(text: str) -> float:
    return _number(text, 0.0, "a positive speed-up")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure replay, transport, tagging and live throughput against baselines",
        description="Measure on this machine: the ZeroMQ PUSH/PULL ceiling, the tagging kernel "
        "against numpy searchsorted and pandas merge_asof, end-to-end replay of a synthetic "
        "run of 10^7 pulses and the builder's peak memory, and (without --quick) a replay of "
        "10^8 pulses, the highest pulse rate the live system takes without loss for 60 s, "
        "the time to simulate the TEXONO exposure (4712 h ON + 1250 h OFF) and a soak: "
        "nudaq up --sim taking data for --soak-minutes at --soak-speed, the memory of every "
        "process sampled, a slope per process. --quick takes under 2 minutes, the full run "
        "about 6 minutes plus the soak.",
    )
    p.add_argument(
        "--quick", action="store_true", help="leave out the 10^8 replay, live, long exposure, soak"
    )
    p.add_argument("--only", choices=("soak",), help="run only this bench")
    p.add_argument(
        "--soak-minutes",
        type=_minutes,
        metavar="M",
        help=f"wall minutes of the soak, warm-up included (default {SOAK_MINUTES:g})",
    )
    p.add_argument(
        "--soak-speed",
        type=_speed,
        metavar="X",
        help=f"simulated clock speed-up of the soak (default {SOAK_SPEED:g})",
    )
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.quick and (args.only or args.soak_minutes or args.soak_speed):
        raise NudaqError(
            "--quick leaves the soak out: drop --quick, or --only/--soak-minutes/--soak-speed"
        )
    from hardware_sim.bench.run import print_table, require_baselines, run_benchmarks

    require_baselines()
    result = run_benchmarks(
        quick=args.quick,
        only=args.only,
        soak_minutes=args.soak_minutes or SOAK_MINUTES,
        soak_speed=args.soak_speed or SOAK_SPEED,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0
