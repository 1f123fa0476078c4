"""``python -m daq.processes SERVICE [ARGS]``: run one nudaq process by its service name.

Services are registered as entry points (daq.core.plugins); each main takes its own
arguments (``python -m daq.processes builder --help``).
"""

from __future__ import annotations

import sys

from daq.core.errors import NudaqError
from daq.core.plugins import load_service
from daq.processes.common import exit_now


def run() -> None:
    """Load the service named by the first argument and run its main with the rest."""
    if len(sys.argv) < 2:
        print("usage: python -m daq.processes SERVICE [ARGS]", file=sys.stderr)
        exit_now(2)
    name, argv = sys.argv[1], sys.argv[2:]
    try:
        main = load_service(name)
    except NudaqError as err:
        print(f"daq.processes: error: {err}", file=sys.stderr)
        exit_now(2)
    exit_now(int(main(argv) or 0))


run()
