"""The ``nudaq`` command: parses arguments and delegates to the subcommand modules.

Every module in ``daq.commands`` and ``online.commands`` defines
``register(subparsers) -> None``, which adds its parser and sets ``func`` to a function
``(args) -> int`` returning the exit code. Errors of nudaq (daq.errors.NudaqError) become
one line on stderr and exit code 2; a Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import NoReturn

from . import __version__
from .errors import NudaqError
from .process import exit_now

COMMAND_PACKAGES = ("daq.commands", "online.commands")


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="nudaq",
        description="Data acquisition and online analysis of the reactor-neutrino "
        "magnetic-moment experiment.",
    )
    parser.add_argument("--version", action="version", version=f"nudaq {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for package_name in COMMAND_PACKAGES:
        package = importlib.import_module(package_name)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package_name}.{info.name}").register(subparsers)
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
