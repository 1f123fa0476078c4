"""The plugin registry: the commands and services of nudaq, found through entry points.

The packages are layered (hardware_sim -> online -> daq) and a lower layer never imports an
upper one. What the ``nudaq`` command offers and which processes a system can start are
therefore declared in pyproject.toml as entry points and looked up here by name:

- ``nudaq.commands``: NAME = "module:register", a function ``register(subparsers)`` that adds
  the subcommand NAME to ``nudaq`` (and sets ``func`` to its ``(args) -> int``);
- ``nudaq.services``: NAME = "module:main", a function ``main(argv) -> int``: the main of one
  OS process. ``python -m daq.processes NAME ARGS`` runs it; the supervisor starts every
  process that way, so run control and supervision name services, never modules.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

from daq.core.errors import NudaqError

COMMANDS = "nudaq.commands"
SERVICES = "nudaq.services"


def registered(group: str) -> dict[str, EntryPoint]:
    """The entry points of a group by name (empty when the package is not installed)."""
    return {ep.name: ep for ep in entry_points(group=group)}


def load_service(name: str) -> Callable[[list[str]], int | None]:
    """The main function of the service ``name``; NudaqError naming the known ones."""
    services = registered(SERVICES)
    if name not in services:
        known = ", ".join(sorted(services)) or "none (is nudaq installed?)"
        raise NudaqError(f"unknown service {name!r}; known: {known}")
    return services[name].load()
