"""The ``nudaq`` command: parses arguments and delegates to the registered subcommands.

Subcommands are the ``nudaq.commands`` entry points (daq.core.plugins), each a
``register(subparsers) -> None`` that adds its parser and sets ``func`` to a function
``(args) -> int`` returning the exit code; every package registers its own (``nudaq sim``
lives with the simulator), and this module names none of them. Errors of nudaq
(daq.core.errors.NudaqError) become one line on stderr and exit code 2; a Ctrl-C exits
with 130.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from daq import __version__
from daq.core.errors import NudaqError
from daq.core.plugins import COMMANDS, registered
from daq.processes.common import exit_now


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="nudaq",
        description="Data acquisition and online analysis of the reactor-neutrino "
        "magnetic-moment experiment.",
    )
    parser.add_argument("--version", action="version", version=f"nudaq {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, entry in sorted(registered(COMMANDS).items()):
        entry.load()(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except NudaqError as err:
        print(f"nudaq {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if type(err).__module__.startswith("sqlalchemy"):
            reason = str(getattr(err, "orig", None) or err).splitlines()[0]
            print(
                f"nudaq {args.command}: error: cannot use the database: {reason}"
                " (is this the database nudaq up writes?)",
                file=sys.stderr,
            )
            return 2
        raise
    except KeyboardInterrupt:
        print(f"nudaq {args.command}: interrupted", file=sys.stderr)
        return 130


def run() -> NoReturn:
    """The console script: main, then exit without the interpreter's slow teardown."""
    exit_now(main())


if __name__ == "__main__":
    run()
