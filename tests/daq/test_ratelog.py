"""Rate-limited logging on a fake clock: first line at once, then one summary per interval."""

from __future__ import annotations

import logging

import pytest

from daq.core.ratelog import OTHER, RateLimitedLog

INTERVAL_S = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logged(caplog):
    """(the RateLimitedLog, its fake clock, the lines written so far)."""
    logger = logging.getLogger("test.ratelog")
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="test.ratelog")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "test.ratelog"]

    return RateLimitedLog(logger, INTERVAL_S, max_reasons=3, clock=clock), clock, lines


def test_first_occurrence_at_once_then_one_summary_per_interval(logged):
    rlog, clock, lines = logged
    rlog.log("junk", "rejected %s", "first")
    assert lines() == ["rejected first"]
    for _ in range(999):
        clock.now += 0.001
        rlog.log("junk", "rejected %s", "again")
    assert lines() == ["rejected first"]
    assert rlog.pending == {"junk": 999}
    clock.now = 1000.0 + INTERVAL_S
    rlog.log("junk", "rejected %s", "late")
    assert lines() == ["rejected first", "1000 more junk in the last 10.0 s"]
    assert rlog.pending == {}
    for _ in range(5):  # the next window: counted, no line before its interval is over
        clock.now += 1
        rlog.log("junk", "rejected")
    assert len(lines()) == 2


def test_a_reason_quiet_for_an_interval_is_written_in_full_again(logged):
    rlog, clock, lines = logged
    rlog.log("junk", "one")
    clock.now += INTERVAL_S
    rlog.log("junk", "two")
    assert lines() == ["one", "two"]


def test_reasons_are_limited_separately(logged):
    rlog, clock, lines = logged
    for _ in range(3):
        rlog.log("a", "a line")
        rlog.log("b", "b line")
    assert lines() == ["a line", "b line"]
    assert rlog.pending == {"a": 2, "b": 2}


def test_flush_writes_pending_summaries_and_forgets(logged):
    rlog, clock, lines = logged
    rlog.log("a", "a line")
    rlog.log("b", "b line")
    clock.now += 2.5
    rlog.log("a", "a line")
    rlog.log("a", "a line")
    rlog.flush()
    assert lines() == ["a line", "b line", "2 more a in the last 2.5 s"]
    rlog.flush()  # nothing pending: nothing written
    rlog.log("a", "a line after the close")
    assert lines()[-1] == "a line after the close"


def test_distinct_reasons_beyond_the_cap_are_pooled_under_other(logged):
    rlog, clock, lines = logged
    for i in range(100):
        rlog.log(f"reason {i}", "line %d", i)
    assert lines() == ["line 0", "line 1", "line 2", "line 3"]
    assert rlog.pending == {OTHER: 96}
    assert len(rlog._windows) == rlog.max_reasons + 1  # memory: the cap, plus OTHER
    clock.now += INTERVAL_S
    rlog.log("reason 0", "again")
    rlog.log("reason 99", "again")
    assert lines()[-2:] == ["again", f"97 more {OTHER} in the last 10.0 s"]


def test_level_and_bad_arguments(caplog):
    logger = logging.getLogger("test.ratelog.level")
    caplog.set_level(logging.DEBUG, logger="test.ratelog.level")
    RateLimitedLog(logger, 1.0, level=logging.ERROR).log("x", "bad")
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    with pytest.raises(ValueError, match="interval_s"):
        RateLimitedLog(logger, 0)
    with pytest.raises(ValueError, match="max_reasons"):
        RateLimitedLog(logger, 1.0, max_reasons=0)
