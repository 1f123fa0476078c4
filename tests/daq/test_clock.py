"""The live builder's bound of the DAQ clock."""

from __future__ import annotations

from daq.build.clock import DaqClock

S = 1_000_000_000


def test_no_bound_before_the_first_anchor():
    clock = DaqClock(rate=1.0, lead_s=10.0)
    assert clock.limit_ns(5.0) is None
    assert not clock.ahead(2**62, 5.0)


def test_the_bound_follows_the_wall_clock_at_the_clock_rate():
    clock = DaqClock(rate=5.0, lead_s=10.0)
    clock.anchor(1000 * S, now_s=100.0)  # the device started at 1000 s, heard at wall 100 s
    assert clock.limit_ns(100.0) == 1050 * S  # 10 wall s at 5x
    assert clock.limit_ns(102.0) == 1060 * S
    assert not clock.ahead(1060 * S, 102.0)
    assert clock.ahead(1060 * S + 1, 102.0)


def test_a_later_anchor_only_tightens_from_within_the_bound():
    clock = DaqClock(rate=1.0, lead_s=10.0)
    clock.anchor(1000 * S, now_s=0.0)
    clock.anchor(900 * S, now_s=1.0)  # an older start heard later: a weaker bound, ignored
    assert clock.limit_ns(1.0) == 1011 * S
    clock.anchor(1005 * S, now_s=1.0)  # a start heard sooner after it happened: tighter
    assert clock.limit_ns(1.0) == 1015 * S
    clock.anchor(2**61, now_s=1.0)  # a forged future start: ignored
    assert clock.limit_ns(1.0) == 1015 * S
