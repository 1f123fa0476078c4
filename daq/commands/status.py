"""``nudaq status``: the overview of a running system, for a shifter on ssh."""

from __future__ import annotations

import argparse
import json
import math

from daq.commands.options import add_system_options, require_system, resolve
from daq.control.runcontrol import request
from daq.core.records import DATA_STREAM_NAMES

STATUS_TIMEOUT_S = 10.0
"""How long a running system's run control may take to answer (s): it answers between the
steps of a transition."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "status",
        help="show the state of a running system",
        description="Ask the run control of a running system (same data directory) for its "
        "state, run, rates, dead time and losses.",
    )
    add_system_options(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config, data_dir, _ = resolve(args, system=True)
    require_system(config, data_dir)
    status = request(config, data_dir, "status", timeout_s=STATUS_TIMEOUT_S)
    status.pop("ok", None)
    status.pop("error", None) if not status.get("error") else None
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    render(status)
    return 0


def format_rate(hz: float) -> str:
    """A rate in Hz to three significant digits, whole Hz from 100 Hz up, no exponent
    (0.200, 12.3, 250, 12346): a 0.2 Hz counter does not read as 0."""
    rounded = float(format(hz, ".3g"))
    if rounded == 0 or abs(rounded) >= 100 or not math.isfinite(hz):
        return format(hz, ".0f")
    return format(rounded, f".{2 - math.floor(math.log10(abs(rounded)))}f")


def _number(value: float | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def render(status: dict) -> None:
    """Print the overview with rich: run, processes, rates and losses per stream."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    mon = status.get("monitor") or {}
    console.print(
        f"[bold]run {status.get('run') or '-'}[/bold]  state [bold]{status['state']}[/bold]  "
        f"elapsed {status.get('elapsed_s', 0):.0f} s  reactor {mon.get('reactor', '?')}  "
        f"power {_number(mon.get('power_MW'), '.0f')} MW  "
        f"dead {100 * mon.get('dead_fraction', 0):.2f}%"
    )
    if mon.get("elapsed_s"):
        console.print(
            f"exposure {100 * mon.get('live_time_s', 0) / mon['elapsed_s']:.2f}% of the elapsed"
            f" time ({mon.get('exposure_uncovered_s', 0):.3f} s uncovered: dead or blind)"
        )
    if status.get("error"):
        console.print(f"[red]error: {status['error']}[/red]")
    table = Table("stream", "pulses", "rate (Hz)", "lost", "dead / blind (s)")
    for stream in DATA_STREAM_NAMES:
        table.add_row(
            stream,
            str(mon.get("pulses", {}).get(stream, 0)),
            format_rate(mon.get("rates_hz", {}).get(stream, 0)),
            str(mon.get("lost", {}).get(stream, 0)),
            f"{mon.get('uncovered_s', {}).get(stream, 0):.3f}",
        )
    console.print(table)
    console.print("processes: " + ", ".join(status.get("processes", [])))
    restarted = supervision_line(status.get("supervision") or {})
    if restarted:
        console.print(f"[yellow]{restarted}[/yellow]")


def supervision_line(supervision: dict[str, dict]) -> str:
    """The processes that were restarted or are being restarted, with how each last ended
    ("" when none was)."""
    parts = [
        f"{name} {info['restarts']}x (last {info['last_exit']}"
        f"{'' if info['running'] else '; restarting'})"
        for name, info in sorted(supervision.items())
        if info.get("restarts") or not info.get("running", True)
    ]
    return "restarted: " + ", ".join(parts) if parts else ""
