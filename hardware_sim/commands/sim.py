"""``nudaq sim generate``: weeks or months of simulated data taking into the database.

Runs of ``--run-hours`` (the last one shorter) are simulated by hardware_sim.fastsim: the
generator's fast mode through the event builder and the spectrum filler of live data, so
``nudaq analysis`` sees them like any run (marked simulated, without raw files).
"""

from __future__ import annotations

import argparse
import json
import math

from daq.commands.options import add_system_options, resolve

MAX_MU_NU_MUB = 1e-6
"""Larger --mu-nu values are taken as a unit mistake (mu_B, not 1e-10 mu_B)."""


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of hours: {text!r}") from None
    if not (math.isfinite(value) and value * 3600 >= 1):
        raise argparse.ArgumentTypeError(f"must be at least 1 s (1/3600 h), got {text!r}")
    return value


def _mu_nu(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and 0 <= value < MAX_MU_NU_MUB):
        raise argparse.ArgumentTypeError(
            f"must be a magnetic moment in mu_B between 0 and {MAX_MU_NU_MUB:g} "
            f"(e.g. 3e-10), got {text!r}"
        )
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sim",
        help="simulated data without the hardware chain",
        description="Simulated data for analysis studies.",
    )
    sub = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)
    g = sub.add_parser(
        "generate",
        help="simulate hours of data taking into the database",
        description="Simulate HOURS of data taking at a fixed reactor state as runs in the "
        "database, through the event builder and spectrum filling of live data; only the "
        "veto pulses that a tagging window can reach are drawn (hardware_sim.fastsim).",
    )
    g.add_argument("--hours", type=_hours, required=True, help="simulated hours (> 0)")
    g.add_argument("--reactor", choices=("on", "off"), required=True, help="reactor state")
    g.add_argument(
        "--mu-nu",
        type=_mu_nu,
        default=0.0,
        help="injected neutrino magnetic moment in mu_B, e.g. 3e-10 (default 0)",
    )
    g.add_argument("--seed", type=int, help="random seed (default: sim.seed); run N uses (S, N)")
    g.add_argument("--run-hours", type=_hours, default=24.0, help="hours per run (default 24)")
    add_system_options(g)
    g.add_argument("--json", action="store_true", help="the runs created as one JSON object")
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from daq.store.session import make_engine, upgrade_database
    from hardware_sim.fastsim import generate_runs

    config, _, db_url = resolve(args)
    config.sim.hold_reactor(args.reactor)
    power = config.sim.reactor[0].power_MW
    config.sim.mu_nu_1e10 = args.mu_nu / 1e-10
    if args.seed is not None:
        config.sim.seed = args.seed
    engine = make_engine(db_url)
    try:
        upgrade_database(engine)
        runs = generate_runs(engine, config, args.hours, power, args.run_hours)
    finally:
        engine.dispose()
    total = {
        "runs": len(runs),
        "elapsed_s": sum(r.elapsed_s for r in runs),
        "live_s": sum(r.live_s for r in runs),
        "exposure_kg_day": sum(r.exposure_kg_day for r in runs),
    }
    if args.json:
        out = {
            "reactor": args.reactor,
            "mu_nu_muB": args.mu_nu,
            "seed": config.sim.seed,
            "database": db_url,
            "runs": [r.to_json() for r in runs],
            "total": total,
        }
        print(json.dumps(out))
        return 0
    print(
        f"runs {runs[0].number}-{runs[-1].number} ({len(runs)}): {args.hours:g} h reactor "
        f"{args.reactor.upper()}, mu_nu {args.mu_nu:g} mu_B, seed {config.sim.seed}"
    )
    print(
        f"  exposure {total['exposure_kg_day']:.3f} kg day, live {total['live_s']:.0f} s of "
        f"{total['elapsed_s']:.0f} s, into {db_url}"
    )
    return 0
