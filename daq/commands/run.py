"""``nudaq run start|stop``: ask a running system to begin or end a run."""

from __future__ import annotations

import argparse
import json

from daq.commands.options import add_system_options, require_system, resolve
from daq.control.runcontrol import request


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="start or stop a run on a running system",
        description="Begin or end a run through the run control of a running system.",
    )
    p.add_argument("action", choices=("start", "stop"))
    p.add_argument("--comment", default="", help="comment of the new run")
    add_system_options(p)
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config, data_dir, _ = resolve(args, system=True)
    require_system(config, data_dir)
    if args.action == "start":
        reply = request(config, data_dir, "start", comment=args.comment)
        text = f"run {reply['run']} started"
    else:
        reply = request(config, data_dir, "stop")
        text = f"run {reply['summary'].get('run')} stopped"
    reply.pop("ok", None)
    reply.pop("error", None)
    print(json.dumps(reply, indent=2) if args.json else text)
    return 0
