"""``nudaq up``: start the whole system (on simulated hardware with --sim) and take data."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from daq.commands.options import add_system_options, resolve
from daq.commands.status import format_rate
from daq.control.lock import DataDirLock
from daq.control.runcontrol import RunControl
from daq.control.supervisor import CrashLoop, Event, Supervisor, stop_signals_ignored
from daq.core.config import SHIFTER_TOKEN_ENV, SHIFTER_TOKEN_KEY_ENV, Config
from daq.core.errors import RunControlError
from daq.core.records import DATA_STREAM_NAMES
from daq.processes.common import setup_logging

log = logging.getLogger("daq.up")
STARTUP_TIMEOUT_S = 90.0
STOP_MARGIN_S = 10.0
"""What stopping the processes may take beyond the builder's wait for the end-of-run of every
stream (``builder.drain_timeout_s``): closing the run, the simulator's last flush (wall s)."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "up",
        help="start the whole system and take data",
        description="Start every nudaq process (simulated hardware with --sim), begin a run, "
        "and show a live status line until Ctrl-C (or SIGTERM); with --duration take one run "
        "and print its summary.",
    )
    p.add_argument("--sim", action="store_true", help="run on simulated hardware")
    add_system_options(p)
    p.add_argument("--duration", type=float, help="take one run of this many simulated seconds")
    p.add_argument("--reactor", choices=("on", "off"), help="simulated reactor state (--sim)")
    p.add_argument("--speed", type=float, help="simulated clock speed-up factor (--sim)")
    p.add_argument("--comment", default="", help="comment of the run")
    p.add_argument("--no-run", action="store_true", help="start the system but no run")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(func=run)


def _apply_overrides(config: Config, args: argparse.Namespace) -> None:
    if args.speed is not None:
        if args.speed <= 0:
            raise RunControlError(f"--speed must be positive, got {args.speed}")
        config.sim.speed = args.speed
    if args.reactor:
        config.sim.hold_reactor(args.reactor)
    if args.duration is not None and args.duration <= 0:
        raise RunControlError(f"--duration must be positive, got {args.duration}")


def _start_processes(sup: Supervisor, config: Config, data_dir: Path, db_url: str, sim: bool):
    snapshot = data_dir / "config" / "running.json"
    snapshot.parent.mkdir(exist_ok=True)
    common = ["--data-dir", str(data_dir)]
    if sim:
        snapshot.write_text(config.snapshot())
        child = sup.spawn_service(
            "sim",
            "sim",
            "--config",
            str(snapshot),
            *common,
            capture_stdout=True,
            stop_last=True,
            restartable=False,  # the hardware: its addresses are the readouts' configuration
        )
        urls = sup.read_json_line(child, STARTUP_TIMEOUT_S)
        for stream in DATA_STREAM_NAMES:
            getattr(config.frontends, stream).url = urls[stream]
        config.slowcontrol.url = urls["slowcontrol"]
    for stream in DATA_STREAM_NAMES:
        if not getattr(config.frontends, stream).url:
            raise RunControlError(f"frontends.{stream}.url is empty (give it, or use --sim)")
    if not config.slowcontrol.url:
        raise RunControlError("slowcontrol.url is empty (give it, or use --sim)")
    snapshot.write_text(config.snapshot())
    common += ["--config", str(snapshot)]
    sup.spawn_service("builder", "builder", *common, "--db", db_url)
    sup.spawn_service(
        "slowcontrol", "slowcontrol", *common, "--db", db_url, "--url", config.slowcontrol.url
    )
    for stream in ("crv", "acv", "hpge"):
        sup.spawn_service(
            f"readout-{stream}",
            "readout",
            *common,
            "--stream",
            stream,
            "--url",
            getattr(config.frontends, stream).url,
        )
    if config.web.shifter_token and not os.environ.get(SHIFTER_TOKEN_ENV):
        # the snapshot leaves the secret out: hand it over privately, saying where it is from
        os.environ[SHIFTER_TOKEN_ENV] = config.web.shifter_token
        os.environ[SHIFTER_TOKEN_KEY_ENV] = "web.shifter_token"
    web = sup.spawn_service("web", "web", *common, "--db", db_url, capture_stdout=True)
    sup.spawn_service("monitor", "monitor", *common, "--db", db_url)
    url = sup.read_json_line(web, STARTUP_TIMEOUT_S)["url"]
    print(f"nudaq: web monitoring and control at {url}", file=sys.stderr, flush=True)


def _status_line(rc: RunControl) -> str:
    mon = rc.snapshots.latest
    rates = mon.get("rates_hz", {})
    lost = mon.get("lost", {})
    parts = [f"run {rc.machine.run or '-'} {rc.machine.state.value}"]
    if mon:
        parts.append(f"reactor {mon.get('reactor', '?')}")
        parts.append(" ".join(f"{s} {format_rate(rates.get(s, 0))} Hz" for s in DATA_STREAM_NAMES))
        parts.append(f"dead {100 * mon.get('dead_fraction', 0):.2f}%")
        parts.append(f"lost {sum(lost.values()) if lost else 0}")
    return " | ".join(parts)


def run(args: argparse.Namespace) -> int:
    config, data_dir, db_url = resolve(args, create=True)
    _apply_overrides(config, args)
    if not args.sim and args.reactor:
        raise RunControlError("--reactor only applies to simulated hardware (--sim)")
    lock = DataDirLock(data_dir)
    setup_logging("up", data_dir)
    (data_dir / "sockets").mkdir(exist_ok=True)  # run control binds its ipc endpoints there
    from daq.store.session import make_engine, upgrade_database

    engine = make_engine(db_url)
    upgrade_database(engine)
    _recover_open_runs(config, engine, data_dir)
    sup = Supervisor(data_dir, config.supervision, pass_fds=(lock.fd,))
    rc = RunControl(config, data_dir, engine)
    sup.on_event = _supervision_events(rc)
    summary: dict | None = None
    code = 0
    previous = {  # stop as on Ctrl-C
        sig: signal.signal(sig, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        _start_processes(sup, config, data_dir, db_url, args.sim)
        rc.wait_for_processes(
            [c.name for c in sup.children if c.name != "sim"], STARTUP_TIMEOUT_S, sup.check
        )
        print(f"nudaq: system up, data directory {data_dir}, database {db_url}", file=sys.stderr)
        if not args.no_run:
            rc.start_run(args.comment, sup.check)
        summary = _loop(rc, sup, config, args)
    except CrashLoop as err:
        print(f"nudaq up: error: {err}; stopping the system", file=sys.stderr)
        rc.supervisor_alarm("crash_loop", "critical", str(err), rc.machine.run)
        summary, code = _stop_after(rc, sup), 1
    except RunControlError as err:
        print(f"nudaq up: error: {err}", file=sys.stderr)
        if rc.machine.state.value != "error":
            rc.fail(str(err))
        code = 1
    except KeyboardInterrupt:
        summary, code = _stop_on_signal(rc, sup)
    finally:
        sup.stop_all(config.builder.drain_timeout_s + STOP_MARGIN_S)
        rc.close()
        lock.release()
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    if summary is not None and code == 0:
        _print_summary(summary, args.json)
    return code


def _recover_open_runs(config: Config, engine, data_dir: Path) -> None:
    """Close every run a crash left open (daq.store.rebuild.recover_run); one that cannot be
    recovered is marked failed with the reason, and the system starts anyway."""
    from daq.core.errors import NudaqError, RawFileError
    from daq.store.rebuild import recover_run
    from daq.store.runs import end_run, open_runs
    from daq.store.session import session_scope

    with session_scope(engine, readonly=True) as session:
        numbers = open_runs(session)
    for number in numbers:
        try:
            report = recover_run(config, engine, data_dir, number)
            damage = report["damage"] or "no damage"
            print(
                f"nudaq: run {number} was left open by a crash: recovered from"
                f" {report['raw_file']} ({damage})",
                file=sys.stderr,
            )
        except RawFileError as err:  # its raw file is broken: it stays so
            print(f"nudaq: run {number} cannot be recovered: {err}", file=sys.stderr)
            with session_scope(engine) as session:
                end_run(session, number, state="error", error=f"not recoverable: {err}")
        except (NudaqError, OSError) as err:
            print(
                f"nudaq: run {number} is not recovered now ({err}); the next start, or"
                f" nudaq recover {number}, tries again",
                file=sys.stderr,
            )


def _supervision_events(rc: RunControl):
    """What nudaq up does when the supervisor reports a death or a restart: run control
    forgets or takes back the process, and an alarm stays raised while it is away."""

    def handle(event: Event) -> None:
        name = event.child.name
        if event.kind == "died":
            rc.process_died(name, event.detail, event.clean)
            message = f"process {name} {event.detail}: being restarted"
            rc.supervisor_alarm(f"restart:{name}", "warning", message, rc.machine.run)
        else:
            rc.supervisor_alarm(f"restart:{name}", number=rc.machine.run)

    return handle


def _stop_after(rc: RunControl, sup: Supervisor) -> dict | None:
    """End an open run cleanly after a fault that stops the system (the processes still
    alive end their part; those away have none); None if there was no run or it failed."""
    if rc.machine.state.value != "running":
        return None
    try:
        return rc.stop_run(sup.check)
    except RunControlError as err:
        print(f"nudaq up: error while stopping: {err}", file=sys.stderr)
        return None


def _stop_on_signal(rc: RunControl, sup: Supervisor) -> tuple[dict | None, int]:
    """After Ctrl-C or SIGTERM: end the open run through run control; (the run summary or
    None, the exit status).

    A second signal while the run ends cuts that short: the processes, stopped next, each end
    the run themselves (sending and recording everything first, daq.processes), and the run
    is marked failed because run control did not see it end.
    """
    if rc.machine.state.value == "running":
        try:
            return rc.stop_run(sup.check), 0
        except RunControlError as err:
            print(f"nudaq up: error while stopping: {err}", file=sys.stderr)
            return None, 1
        except KeyboardInterrupt:
            pass
    if rc.machine.state.value != "stopping":
        return None, 0
    reason = "stop interrupted by a second signal: each process ends the run itself as it stops"
    print(f"nudaq up: {reason}", file=sys.stderr)
    with stop_signals_ignored():  # a third signal must not cut short the record of the failure
        rc.fail(reason)
    return None, 130


def _loop(rc: RunControl, sup: Supervisor, config: Config, args) -> dict | None:
    """Serve requests and watch processes until the duration ends or Ctrl-C."""
    end_at = None
    if args.duration is not None:
        end_at = time.monotonic() + args.duration / config.sim.speed if args.sim else None
        end_at = end_at or time.monotonic() + args.duration
    interactive = sys.stderr.isatty() and args.duration is None
    while True:
        sup.check()
        rc.pump(100)
        rc.supervision = sup.status()
        rc.serve_returns(sup.check)
        rc.serve_process_requests(sup.check)
        if rc.serve_request(sup.check) == "shutdown":
            break
        if interactive:
            print(f"\r{_status_line(rc):<110}", end="", file=sys.stderr, flush=True)
        if end_at is not None and time.monotonic() >= end_at:
            return rc.stop_run(sup.check) if rc.machine.state.value == "running" else None
    if rc.machine.state.value == "running":
        return rc.stop_run(sup.check)
    return None


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"run {summary.get('run')} summary", show_header=False)
    for key, value in summary.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    Console().print(table)
