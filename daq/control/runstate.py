"""The run-control state machine: states, the transitions allowed between them, and why not.

Pure and small so it is testable without processes; daq.control.runcontrol drives it.

    idle --start--> running --stop--> stopping --stopped--> idle
    any  --fail-->  error   --reset--> idle
"""

from __future__ import annotations

import enum

from daq.core.errors import RunControlError


class RunState(enum.StrEnum):
    """States of the data-taking system."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    ERROR = "error"


TRANSITIONS: dict[str, tuple[frozenset[RunState], RunState]] = {
    "start": (frozenset({RunState.IDLE}), RunState.RUNNING),
    "stop": (frozenset({RunState.RUNNING}), RunState.STOPPING),
    "stopped": (frozenset({RunState.STOPPING}), RunState.IDLE),
    "fail": (frozenset(RunState), RunState.ERROR),
    "reset": (frozenset({RunState.ERROR, RunState.IDLE}), RunState.IDLE),
}


class RunStateMachine:
    """Current state, run number, and a log of every transition taken."""

    def __init__(self) -> None:
        self.state = RunState.IDLE
        self.run: int | None = None
        self.history: list[tuple[str, RunState, RunState]] = []

    def apply(self, transition: str) -> RunState:
        """Take a transition or raise RunControlError saying why it is not allowed now."""
        try:
            allowed, target = TRANSITIONS[transition]
        except KeyError:
            raise RunControlError(f"unknown transition {transition!r}") from None
        if self.state not in allowed:
            raise RunControlError(f"cannot {transition} while {self.state.value}")
        self.history.append((transition, self.state, target))
        self.state = target
        return target
