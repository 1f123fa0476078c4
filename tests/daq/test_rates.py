"""Monitor rates: each stream's pulses per second of its own DAQ time."""

from __future__ import annotations

import numpy as np

from daq.build.eventbuilder import EventBuilder
from daq.build.rates import RateMeter
from daq.core.records import Stream
from tests.daq.test_eventbuilder import RUN, pulses, small_config, stream_batches

S = 10**9  # ns


def test_rates_follow_each_streams_own_clock_when_one_runs_ahead():
    """The CRV readout is seconds ahead of the HPGe one (which holds the build horizon back),
    and the lead grows: the shown rates are still the true ones, not inflated by the lead."""
    true_hz = {"hpge": 20.0, "crv": 300.0}
    data = {
        Stream.HPGE: pulses(np.arange(0, 60 * S, S // 20)),
        Stream.CRV: pulses(np.arange(0, 60 * S, S // 300), adc=500),
    }
    eb = EventBuilder(small_config(), RUN, streams=(Stream.HPGE, Stream.CRV), reactor_on=True)
    meter = RateMeter()
    per_stream = {
        s: iter(stream_batches(s, d, 0, 60 * S, edges=range(S, 60 * S, S))) for s, d in data.items()
    }
    for s in per_stream:
        eb.add(next(per_stream[s]))  # begin-of-run
    shown = []
    for second in range(1, 30):
        eb.add(next(per_stream[Stream.HPGE]))
        for _ in range(2):  # CRV gains a second on HPGe every second
            eb.add(next(per_stream[Stream.CRV]))
        eb.advance()
        s = eb.summary
        assert s["complete_ns"] == {"hpge": second * S, "crv": 2 * second * S}
        shown.append(meter.update(s["complete_ns"], s["pulses"]))
    assert eb.summary["horizon_ns"] < 30 * S  # the HPGe stream holds the horizon back
    for rates in shown[1:]:
        for name, hz in true_hz.items():
            assert rates[name] == hz, (name, rates)


def test_rates_cover_the_last_window_and_start_at_zero():
    meter = RateMeter(window_ns=10 * S)
    assert meter.update({}, {"acv": 0}) == {"acv": 0.0}  # nothing complete yet
    assert meter.update({"acv": 0}, {"acv": 0}) == {"acv": 0.0}
    for t in range(1, 21):  # 100 Hz for 10 s, then 1000 Hz
        count = 100 * min(t, 10) + 1000 * max(t - 10, 0)
        rate = meter.update({"acv": t * S}, {"acv": count})["acv"]
    assert rate == 1000.0  # the 100 Hz seconds have left the window
