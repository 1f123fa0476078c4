"""``nudaq analysis``: background level, mu_nu fit, limit and sensitivity of selected runs."""

from __future__ import annotations

import argparse
import json

from daq.commands.options import add_system_options, resolve
from online.commands.sensitivity import parse_window


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analysis",
        help="mu_nu analysis of stored runs",
        description="ON/OFF analysis of the selected runs: live fraction and accidental veto "
        "probabilities from random triggers, background level, mu_nu^2 fit, Feldman-Cousins "
        "90% CL limit and expected limit. Only runs marked good are analysed unless --quality "
        "says otherwise.",
    )
    add_system_options(p, config=False)
    p.add_argument("--runs", help="run numbers such as 3-7,9 (default: all runs)")
    p.add_argument(
        "--quality",
        choices=("good", "usable", "all"),
        default="good",
        help="runs marked good (default), usable: good or not yet checked, all: bad ones too",
    )
    p.add_argument("--window", help="energy window LO:HI in keV (default: configuration)")
    p.add_argument("--tag", default="", help="replay tag (default: the live results)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--plot", help="write the figure to FILE (.png or .pdf)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from daq.store.session import make_engine, session_scope
    from online.analysis.inputs import analyse_runs

    window = parse_window(args.window) if args.window else None
    _, _, db_url = resolve(args)
    with session_scope(make_engine(db_url), readonly=True) as session:
        inputs, result = analyse_runs(session, args.runs, args.quality, window, args.tag)
    if args.plot:
        from online.analysis.plot import plot_analysis

        plot_analysis(result, args.plot)
    out = {"runs": inputs.runs, **result.to_json()}
    if args.json:
        print(json.dumps(out, allow_nan=False))
        return 0
    fit = out["mu_nu2_1e-20"]
    bkg = out["background_cpd"]
    lo, hi = out["window_keV"]
    print(f"runs {inputs.runs[0]}-{inputs.runs[-1]} ({len(inputs.runs)}), {lo:g}-{hi:g} keV")
    print(
        f"  exposure ON / OFF     {out['exposure_kg_day']['on']:.2f} / "
        f"{out['exposure_kg_day']['off']:.2f} kg day"
    )
    print(
        f"  live fraction         {out['live_fraction']:.4f}; accidental veto AC "
        f"{out['accidental_veto']['ac']:.4f}, CRV {out['accidental_veto']['crv']:.4f}"
    )
    print(f"  background (OFF)      {bkg['value']:.3f} +- {bkg['error']:.3f} cpd")
    print(f"  mu_nu^2               {fit['value']:.3f} +- {fit['error']:.3f} x 1e-20 mu_B^2")
    print(f"  90% CL limit (FC)     mu_nu < {out['limit_90_muB']:.3g} mu_B")
    print(f"  expected limit        mu_nu < {out['expected_limit_90_muB']:.3g} mu_B")
    if args.plot:
        print(f"  figure                {args.plot}")
    return 0
