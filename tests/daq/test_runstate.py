"""The run-control state machine without processes."""

import pytest

from daq.control.runstate import RunState, RunStateMachine
from daq.core.errors import RunControlError


def test_normal_cycle():
    m = RunStateMachine()
    assert m.apply("start") is RunState.RUNNING
    assert m.apply("stop") is RunState.STOPPING
    assert m.apply("stopped") is RunState.IDLE
    assert [h[0] for h in m.history] == ["start", "stop", "stopped"]


@pytest.mark.parametrize(
    "path, bad, why",
    [
        ([], "stop", "cannot stop while idle"),
        (["start"], "start", "cannot start while running"),
        (["start", "fail"], "start", "cannot start while error"),
        ([], "jump", "unknown transition"),
    ],
)
def test_refused_transitions(path, bad, why):
    m = RunStateMachine()
    for t in path:
        m.apply(t)
    state = m.state
    with pytest.raises(RunControlError, match=why):
        m.apply(bad)
    assert m.state is state


def test_error_then_reset():
    m = RunStateMachine()
    m.apply("start")
    m.apply("fail")
    assert m.state is RunState.ERROR
    assert m.apply("reset") is RunState.IDLE
