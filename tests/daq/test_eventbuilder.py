"""The in-memory event builder: coincidences, ordering independence, exposure, bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from daq.build.eventbuilder import EventBuilder
from daq.build.increments import BuildUpdate, ReactorChange
from daq.core.config import Config
from daq.core.records import (
    FLAG_REACTOR_ON,
    FLAG_RT,
    PULSE_DTYPE,
    STREAM_NAMES,
    TAG_AC,
    TAG_CRV,
    TAG_REACTOR_ON,
    TAG_RT,
    TAG_UNCOVERED,
    Category,
    Loss,
    Stream,
)
from daq.formats.wire import (
    INCARNATION_SHIFT,
    KIND_BOR,
    KIND_DATA,
    KIND_EOR,
    REFUSED_AHEAD_OF_CLOCK,
    REFUSED_UNANNOUNCED_RESTART,
    Batch,
)

RUN = 7
ON_KW = 2_900_000  # reactor reading adc: thermal power in kW


def pulses(t, adc=1000, channel=0, flags=0) -> np.ndarray:
    """Pulses at times t (ns); scalars broadcast."""
    t = np.atleast_1d(np.asarray(t, dtype=np.int64))
    p = np.zeros(len(t), dtype=PULSE_DTYPE)
    p["t_ns"], p["adc"], p["channel"], p["flags"] = t, adc, channel, flags
    return np.sort(p, order="t_ns")


def readings(t, on) -> np.ndarray:
    """Reactor readings at times t with ON states."""
    on = np.asarray(on, dtype=bool)
    return pulses(t, adc=np.where(on, ON_KW, 0), flags=np.where(on, FLAG_REACTOR_ON, 0))


def stream_batches(stream, data, start, stop, edges=(), dead_ns=0, run=RUN) -> list[Batch]:
    """BOR at start, one DATA batch per interval between edges (watermark = its end), EOR."""
    out = [Batch(KIND_BOR, int(stream), run, 0, start, pulses([])[:0])]
    bounds = [start, *edges, stop]
    for seq, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True), start=1):
        sel = data[(data["t_ns"] >= lo) & (data["t_ns"] < hi)]
        out.append(Batch(KIND_DATA, int(stream), run, seq, hi, sel, dead_ns=dead_ns))
    out.append(Batch(KIND_EOR, int(stream), run, len(bounds), stop, pulses([])[:0]))
    return out


def build(config, batches, advance_every=1, run=RUN, **kwargs):
    """Feed batches in the given order; the summed update, all events and the builder."""
    eb = EventBuilder(config, run, **kwargs)
    total = BuildUpdate.empty(eb.n_bins)
    events = []
    for i, batch in enumerate(batches, start=1):
        eb.add(batch)
        if i % advance_every == 0:
            update = eb.advance()
            total.merge(update)
            events.append(update.events)
    update = eb.finish()
    total.merge(update)
    events.append(update.events)
    return total, np.concatenate(events), eb


def small_config(**builder) -> Config:
    config = Config()
    for key, value in {"ac_window_ns": 1000, "crv_pre_ns": 5000, "crv_post_ns": 1000}.items():
        setattr(config.builder, key, builder.pop(key, value))
    for key, value in builder.items():
        setattr(config.builder, key, value)
    return config


# --- hand-made coincidences -----------------------------------------------------------------

GE_T = [100_000, 200_000, 300_000, 400_000, 500_000, 600_000, 700_000]
AC = pulses([101_000, 198_999, 299_000, 500_000, 600_000], adc=[80, 80, 80, 80, 10])
CRV = pulses([195_000, 301_001, 401_000, 594_999, 695_000])
REACTOR = readings([0, 350_000], [True, False])
EXPECTED_TAGS = [
    TAG_AC | TAG_REACTOR_ON,  # AC at +w (inclusive edge)
    TAG_CRV | TAG_REACTOR_ON,  # AC at -w-1 (outside), CRV at -pre (inclusive edge)
    TAG_AC | TAG_REACTOR_ON,  # AC at -w, CRV at +post+1 (outside)
    TAG_CRV,  # CRV at +post (inclusive edge); reactor off from 350 us
    TAG_RT | TAG_AC,  # a random trigger with an accidental AC pulse
    0,  # AC below threshold, CRV at -pre-1: a candidate
    TAG_CRV,  # CRV at -pre
]


def hand_made_batches(dead_ns=0):
    ge = pulses(GE_T, adc=[1000 * (i + 1) for i in range(7)])
    ge["flags"][4] = FLAG_RT
    return [
        *stream_batches(Stream.HPGE, ge, 0, 1_000_000, [250_000, 650_000], dead_ns=dead_ns),
        *stream_batches(Stream.ACV, AC, 0, 1_000_000, [120_000, 555_000]),
        *stream_batches(Stream.CRV, CRV, 0, 1_000_000, [400_000]),
        *stream_batches(Stream.REACTOR, REACTOR, 0, 1_000_000, [500_000]),
    ]


def test_hand_made_coincidences_and_categories():
    config = small_config(ac_threshold_adc=50)
    total, events, eb = build(config, hand_made_batches())
    assert events["t_ns"].tolist() == GE_T
    assert events["tags"].tolist() == EXPECTED_TAGS
    np.testing.assert_allclose(events["energy_keV"], [10.0 * (i + 1) for i in range(7)])
    on, off = total.exposure["on"], total.exposure["off"]
    assert (on.events_all, on.events_ac, on.events_crv, on.events_candidate) == (3, 2, 1, 0)
    assert (off.events_all, off.events_ac, off.events_crv, off.events_candidate) == (3, 0, 2, 1)
    assert (off.rt_events, off.rt_ac, off.rt_crv, off.rt_any) == (1, 1, 0, 1)
    assert on.rt_events == 0
    width = config.spectrum.bin_width_keV
    h = total.hist
    assert h.sum() == 3 + 2 + 1 + 3 + 2 + 1 + 1  # ALL + AC + CRV + CANDIDATE + RT entries
    assert h[1, Category.AC, int(10 / width)] == 1 and h[1, Category.AC, int(30 / width)] == 1
    assert h[0, Category.CANDIDATE, int(60 / width)] == 1
    assert h[0, Category.RT, int(50 / width)] == 1 and h[0, Category.ALL].sum() == 3
    assert (on.elapsed_ns, off.elapsed_ns) == (350_000, 650_000)
    assert total.reactor_changes == [
        ReactorChange(0, True, 2900.0),
        ReactorChange(350_000, False, 0.0),
    ]
    s = eb.summary
    assert s["events"] == {"all": 6, "ac": 2, "crv": 3, "candidate": 1, "rt": 1, "uncovered": 0}
    # every veto covers exactly the HPGe run [0, 1 ms): HPGe times whose window reaches before a
    # veto's start or after its stop are blind, 5 us (crv_pre) at the start, 1 us at the end
    assert (on.uncovered_ns, off.uncovered_ns) == (5_000, 1_000)
    assert s["pulses"] == {"hpge": 7, "acv": 5, "crv": 5, "reactor": 2}
    assert s["rejected_messages"] == 0 and s["missing_batches"] == 0
    assert eb.power_MW == 0.0  # the latest reading: reactor off
    assert EventBuilder(config, RUN).power_MW is None


def test_nothing_is_built_before_every_window_is_complete():
    config = small_config()
    batches = {(b.stream, b.seq): b for b in hand_made_batches()}
    eb = EventBuilder(config, RUN)
    for key in [(0, 0), (0, 1), (1, 0), (2, 0), (3, 0), (3, 1)]:
        eb.add(batches[key])
    assert len(eb.advance().events) == 0  # AC and CRV complete only up to their start
    eb.add(batches[(1, 1)])  # AC complete below 120 us: the HPGe pulse at 100 us needs 101 us
    eb.add(batches[(2, 1)])  # CRV complete below 400 us
    update = eb.advance()
    assert update.events["t_ns"].tolist() == [100_000]
    assert eb.summary["horizon_ns"] == 120_000 - config.builder.ac_window_ns
    assert update.exposure["on"].elapsed_ns == eb.summary["horizon_ns"]


def test_dead_time_goes_to_the_reactor_state_of_its_batch():
    _, _, eb = build(small_config(), hand_made_batches(dead_ns=1_000))
    # HPGe data batches end at 250 us (reactor on), 650 us and 1000 us (off): the live
    # fraction 1 - dead / span of each state applies to its covered time (5 us and 1 us of the
    # run's edges are blind, see above)
    assert eb.summary["live_ns"] == {
        "on": 345_000 - 345_000 * 1_000 // 250_000,
        "off": 649_000 - 649_000 * 2_000 // 750_000,
    }
    assert eb.summary["dead_ns"]["hpge"] == 3_000


def test_without_reactor_stream_the_fixed_state_is_used():
    batches = [b for b in hand_made_batches() if b.stream != Stream.REACTOR]
    streams = (Stream.HPGE, Stream.ACV, Stream.CRV)
    total, events, _ = build(small_config(), batches, streams=streams, reactor_on=False)
    assert not np.any(events["tags"] & TAG_REACTOR_ON)
    assert total.exposure["off"].elapsed_ns == 1_000_000 and total.exposure["on"].elapsed_ns == 0
    with pytest.raises(ValueError, match="reactor_on"):
        EventBuilder(small_config(), RUN, streams=streams)


# --- random runs: ordering independence against a numpy reference -----------------------------

T_END = 50_000_000
FLIPS = (20_000_000, 35_000_000)


def random_run(seed: int, n_batches: int = 25):
    """A 50 ms run: dense random vetoes, two reactor changes, and at every batch edge an HPGe
    pulse whose veto partner lies on the other side of the edge (the window straddles the
    watermark, so building too early or dropping vetoes too soon changes the tags)."""
    rng = np.random.default_rng(seed)
    grid = np.arange(10_000, T_END - 10_000, 2_000)
    edges = {
        s: np.sort(rng.choice(grid, n_batches - 1, replace=False)) + rng.integers(0, 1000)
        for s in Stream
    }
    e_ge, e_ac, e_crv = edges[Stream.HPGE], edges[Stream.ACV], edges[Stream.CRV]
    ge_t = np.concatenate([rng.integers(1, T_END, 300), e_ac - 300, e_crv - 300, e_ge + 100])
    ac_t = np.concatenate([rng.integers(0, T_END, 2500), e_ac + 200, e_ge - 500])
    ac_adc = np.concatenate([rng.integers(0, 100, 2500), np.full(2 * (n_batches - 1), 100)])
    crv_t = np.concatenate([rng.integers(0, T_END, 800), e_crv + 500, e_ge - 3000])
    ge = pulses(ge_t, adc=rng.integers(0, 50_000, len(ge_t)))
    ge["flags"][rng.random(len(ge)) < 0.2] = FLAG_RT
    reactor_t = np.arange(0, T_END, 1_000_000)
    on = (reactor_t < FLIPS[0]) | (reactor_t >= FLIPS[1])
    order = np.argsort(ac_t, kind="stable")
    data = {
        Stream.HPGE: ge,
        Stream.ACV: pulses(ac_t[order], adc=ac_adc[order]),
        Stream.CRV: pulses(crv_t),
        Stream.REACTOR: readings(reactor_t, on),
    }
    batches = []
    for stream, d in data.items():
        batches += stream_batches(
            stream, d, 0, T_END, edges[stream].tolist(), dead_ns=(stream + 1) * 10
        )
    return data, batches


def reference_tags(data, config):
    """Tags of every HPGe pulse by plain numpy searchsorted."""
    b = config.builder
    t = data[Stream.HPGE]["t_ns"]

    def any_in(veto, before, after):
        return np.searchsorted(veto, t + after, "right") > np.searchsorted(veto, t - before)

    ac = data[Stream.ACV]
    ac_t = ac["t_ns"][ac["adc"] >= b.ac_threshold_adc]
    rd = data[Stream.REACTOR]
    idx = np.maximum(np.searchsorted(rd["t_ns"], t, "right") - 1, 0)
    tags = np.where(any_in(ac_t, b.ac_window_ns, b.ac_window_ns), TAG_AC, 0)
    tags |= np.where(any_in(data[Stream.CRV]["t_ns"], b.crv_pre_ns, b.crv_post_ns), TAG_CRV, 0)
    tags |= np.where(data[Stream.HPGE]["flags"] & FLAG_RT, TAG_RT, 0)
    tags |= np.where(rd["flags"][idx] & FLAG_REACTOR_ON, TAG_REACTOR_ON, 0)
    return tags


def assert_same(a: BuildUpdate, ev_a, b: BuildUpdate, ev_b):
    np.testing.assert_array_equal(a.hist, b.hist)
    assert a.exposure == b.exposure
    assert a.streams == b.streams
    assert a.reactor_changes == b.reactor_changes
    assert ev_a.tobytes() == ev_b.tobytes()


def test_result_is_independent_of_arrival_order():
    config = small_config(ac_threshold_adc=30)
    data, batches = random_run(seed=3)
    ref, ref_events, eb = build(config, batches)
    np.testing.assert_array_equal(ref_events["tags"], reference_tags(data, config))
    assert ref.exposure["on"].elapsed_ns == FLIPS[0] + T_END - FLIPS[1]
    assert ref.exposure["off"].elapsed_ns == FLIPS[1] - FLIPS[0]
    assert [(c.t_ns, c.on) for c in ref.reactor_changes] == [
        (0, True),
        (FLIPS[0], False),
        (FLIPS[1], True),
    ]
    assert eb.summary["rejected_messages"] == 0
    rng = np.random.default_rng(11)
    for _ in range(40):
        order = rng.permutation(len(batches))
        shuffled = [batches[i] for i in order]
        total, events, _ = build(config, shuffled, advance_every=int(rng.integers(1, 6)))
        assert_same(total, events, ref, ref_events)


# --- bookkeeping ------------------------------------------------------------------------------


def test_missing_batch_is_counted_and_the_rest_is_built():
    config = small_config()
    data, batches = random_run(seed=5)
    ref, ref_events, _ = build(config, batches)
    lost = next(b for b in batches if b.stream == Stream.ACV and b.seq == 4)
    rest = [b for b in batches if b is not lost]
    eb = EventBuilder(config, RUN)
    for b in rest:
        eb.add(b)
    eb.advance()
    assert eb.summary["horizon_ns"] < lost.watermark_ns  # waiting for the gap to close
    eb.finish()
    s = eb.summary
    assert s["missing_batches"] == 1 and s["lost"]["acv"] == 1
    assert s["pulses"]["acv"] == len(data[Stream.ACV]) - len(lost.pulses)
    assert s["elapsed_ns"] == {"on": ref.exposure["on"].elapsed_ns, "off": FLIPS[1] - FLIPS[0]}
    # the AC stream is blind from the last good watermark to the next: every HPGe time whose
    # +-w_ac window reaches into that is uncovered, and so are the run's edges (crv_pre at
    # the start, w_ac and crv_post at the end)
    wm = {b.seq: b.watermark_ns for b in batches if b.stream == Stream.ACV}
    w = config.builder.ac_window_ns
    blind = (wm[3] - w, wm[5] + w)
    assert 5_000 < blind[0] and blind[1] < T_END - w
    ge_t = data[Stream.HPGE]["t_ns"]
    inside = (ge_t >= blind[0]) & (ge_t < blind[1]) | (ge_t < 5_000) | (ge_t >= T_END - w)
    assert s["events"]["uncovered"] == np.count_nonzero(inside) > 0
    assert s["events"]["all"] + s["events"]["rt"] == np.count_nonzero(~inside)
    assert sum(s["exposure_uncovered_ns"].values()) == blind[1] - blind[0] + 5_000 + w
    assert s["uncovered_ns"]["acv"] == wm[5] - wm[3]


def test_a_gap_stalls_at_most_max_pending_batches():
    config = small_config()
    _, batches = random_run(seed=6, n_batches=20)
    lost = next(b for b in batches if b.stream == Stream.CRV and b.seq == 3)
    eb = EventBuilder(config, RUN, max_pending=5)
    for b in batches:
        if b is not lost:
            eb.add(b)
    eb.advance()
    assert eb.summary["missing_batches"] == 1
    assert eb.eor_received and eb.summary["horizon_ns"] > 40_000_000
    eb.add(lost)  # too late now: rejected as a duplicate
    eb.advance()
    assert eb.summary["rejected_messages"] == 1


def test_bad_batches_are_rejected_and_counted_without_changing_the_result():
    config = small_config()
    good = hand_made_batches()
    ref, ref_events, _ = build(config, good)
    unsorted = pulses([300, 100])
    unsorted["t_ns"] = [300, 100]
    bad = [
        Batch(KIND_DATA, int(Stream.HPGE), RUN + 1, 1, 10, pulses([5])),  # other run
        good[1],  # duplicate
        Batch(KIND_DATA, int(Stream.ACV), RUN, 0, 10, pulses([5])),  # seq 0 is not a BOR
        Batch(KIND_DATA, int(Stream.CRV), RUN, 50, 10, unsorted),  # not time-ordered
        Batch(KIND_DATA, 9, RUN, 1, 10, pulses([5])),  # unknown stream
    ]
    total, events, eb = build(config, [*good[:3], *bad, *good[3:]])
    assert eb.summary["rejected_messages"] == len(bad)
    assert total.streams["hpge"].rejected_messages == 2
    assert total.streams["stream9"].rejected_messages == 1
    for name in ("hpge", "acv", "crv", "reactor"):
        total.streams[name].rejected_messages = 0
    del total.streams["stream9"]
    assert_same(total, events, ref, ref_events)


def test_unexpected_stream_is_rejected():
    batches = hand_made_batches()
    streams = (Stream.HPGE, Stream.ACV, Stream.REACTOR)
    total, events, eb = build(small_config(), batches, streams=streams)
    assert eb.summary["rejected_messages"] == sum(b.stream == Stream.CRV for b in batches)
    assert not np.any(events["tags"] & TAG_CRV)


def test_pulses_in_an_already_complete_range_are_rejected():
    config = small_config()
    eb = EventBuilder(config, RUN)
    eb.add(Batch(KIND_BOR, int(Stream.HPGE), RUN, 0, 1000, pulses([])[:0]))
    eb.add(Batch(KIND_DATA, int(Stream.HPGE), RUN, 1, 5000, pulses([2000])))
    eb.add(Batch(KIND_DATA, int(Stream.HPGE), RUN, 2, 9000, pulses([4000])))  # below 5000
    eb.advance()
    assert eb.summary["rejected_messages"] == 1 and eb.summary["pulses"]["hpge"] == 1


def test_unknown_channel_is_counted_not_fatal():
    config = small_config()
    ge = pulses([50_000, 60_000], channel=[0, 3])
    batches = [
        *stream_batches(Stream.HPGE, ge, 0, 100_000),
        *stream_batches(Stream.ACV, pulses([])[:0], 0, 100_000),
        *stream_batches(Stream.CRV, pulses([])[:0], 0, 100_000),
    ]
    total, events, eb = build(
        config, batches, streams=(Stream.HPGE, Stream.ACV, Stream.CRV), reactor_on=True
    )
    assert eb.summary["uncalibrated"] == 1 and np.isnan(events["energy_keV"][1])
    assert total.hist[1, Category.ALL].sum() == 1


def test_memory_stays_bounded_over_a_long_run():
    """Buffers hold only what the windows can still reach, however long the run."""
    config = small_config()
    rng = np.random.default_rng(1)
    t_end = 2_000_000_000
    n_batches = 400
    edges = np.linspace(0, t_end, n_batches + 1).astype(np.int64)[1:-1].tolist()
    data = {
        Stream.HPGE: pulses(np.sort(rng.integers(0, t_end, 20_000))),
        Stream.ACV: pulses(np.sort(rng.integers(0, t_end, 100_000))),
        Stream.CRV: pulses(np.sort(rng.integers(0, t_end, 40_000))),
        Stream.REACTOR: readings(np.arange(0, t_end, 10_000_000), True),
    }
    per_stream = {s: stream_batches(s, d, 0, t_end, edges) for s, d in data.items()}
    eb = EventBuilder(config, RUN)
    largest = 0
    built = 0
    for i in range(n_batches + 2):
        for s in per_stream:
            eb.add(per_stream[s][i])
        built += len(eb.advance().events)
        largest = max(largest, sum(eb.buffered.values()))
    built += len(eb.finish().events)
    assert built == len(data[Stream.HPGE])
    total = sum(len(d) for d in data.values())
    assert largest < 4 * total / n_batches  # about one batch of each stream, never the run


# --- against the detector simulation -----------------------------------------------------------


def test_simulated_partners_are_tagged_and_accidentals_match_random_triggers():
    from hardware_sim.generator import Generator, Origin

    config = small_config()
    sim = config.sim
    # about 200 Hz of veto-free HPGe events and as many random triggers, and veto singles
    # dense enough for accidental tags of several per cent
    sim.flat_cpd, sim.rt_rate_hz = 16_000.0, 200.0
    sim.acv_singles_hz, sim.crv_singles_hz = 50_000.0, 10_000.0
    duration_ns = 4_000_000_000
    streams, truth = Generator(sim, config.detector, seed=4).generate(0, duration_ns, 2900.0)
    edges = np.linspace(0, duration_ns, 21)[1:-1].astype(np.int64).tolist()
    batches = []
    for stream in (Stream.HPGE, Stream.ACV, Stream.CRV):
        batches += stream_batches(stream, streams[stream], 0, duration_ns, edges)
    _, events, _ = build(
        config, batches, streams=(Stream.HPGE, Stream.ACV, Stream.CRV), reactor_on=True
    )
    ge = truth[(truth["stream"] == Stream.HPGE) & truth["recorded"]]
    np.testing.assert_array_equal(events["t_ns"], ge["t_ns"])
    tags, origin = events["tags"], ge["origin"]
    seen = ge["partner_t_ns"] < duration_ns  # a partner past the slice end is not generated
    compton = (origin == Origin.COMPTON) & seen
    cosmic = (origin == Origin.COSMIC) & seen
    assert compton.sum() > 1000 and cosmic.sum() > 300
    assert np.all(tags[compton] & TAG_AC) and np.all(tags[cosmic] & TAG_CRV)
    plain = ~np.isin(origin, [Origin.COMPTON, Origin.COSMIC, Origin.RT])
    rt = origin == Origin.RT
    assert np.all(tags[rt] & TAG_RT) and not np.any(tags[~rt] & TAG_RT)
    for bit, window_ns, singles_hz in [
        (TAG_AC, 2 * config.builder.ac_window_ns, sim.acv_singles_hz),
        (TAG_CRV, config.builder.crv_pre_ns + config.builder.crv_post_ns, sim.crv_singles_hz),
    ]:
        p_plain = np.mean(tags[plain] & bit != 0)
        p_rt = np.mean(tags[rt] & bit != 0)
        sigma = np.sqrt(p_rt * (1 - p_rt) / rt.sum() + p_plain * (1 - p_plain) / plain.sum())
        assert abs(p_plain - p_rt) < 4 * sigma, (bit, p_plain, p_rt, sigma)
        # and both near 1 - exp(-R w) from the veto singles alone (partners add a little)
        assert p_rt > 1 - np.exp(-singles_hz * window_ns * 1e-9) - 4 * sigma


# --- coverage: losses become dead and blind time -----------------------------------------------


def veto_blind(data, stream, lo, hi, config) -> np.ndarray:
    """HPGe pulses whose window for ``stream`` reaches into [lo, hi), by plain numpy."""
    b = config.builder
    before, after = {
        Stream.ACV: (b.ac_window_ns, b.ac_window_ns),
        Stream.CRV: (b.crv_pre_ns, b.crv_post_ns),
    }[stream]
    t = data[Stream.HPGE]["t_ns"]
    return (t + after >= lo) & (t - before < hi)


def edges_blind(data, config) -> np.ndarray:
    """HPGe pulses near the run's start or stop, where a window reaches outside every veto's
    covered time."""
    t = data[Stream.HPGE]["t_ns"]
    b = config.builder
    return (t < max(b.ac_window_ns, b.crv_pre_ns)) | (
        t >= T_END - max(b.ac_window_ns, b.crv_post_ns)
    )


def with_gap(batches, stream, seq, reason, covered_from):
    """The batches with one batch of a stream declaring a gap up to covered_from."""
    out = []
    for b in batches:
        if b.stream == stream and b.seq == seq:
            b = Batch(
                b.kind,
                b.stream,
                b.run,
                b.seq,
                b.watermark_ns,
                b.pulses,
                b.dead_ns,
                b.dropped,
                b.lost_frames,
                int(reason),
                covered_from,
            )
        out.append(b)
    return out


@pytest.mark.parametrize("stream", [Stream.HPGE, Stream.ACV, Stream.CRV])
def test_a_declared_gap_is_uncovered_time_and_its_events_fill_no_rate(stream):
    config = small_config()
    data, batches = random_run(seed=21)
    wm = {b.seq: b.watermark_ns for b in batches if b.stream == stream}
    lo, hi = wm[6], wm[7] - (wm[7] - wm[6]) // 3  # seq 7 covers only its last third
    total, events, eb = build(config, with_gap(batches, stream, 7, Loss.LINE, hi))
    t = data[Stream.HPGE]["t_ns"]
    if stream == Stream.HPGE:
        inside = (t >= lo) & (t < hi)
        blinded = hi - lo
    else:
        inside = veto_blind(data, stream, lo, hi, config)
        w = config.builder
        reach = (
            (w.ac_window_ns, w.ac_window_ns)
            if stream == Stream.ACV
            else (w.crv_post_ns, w.crv_pre_ns)
        )
        blinded = hi - lo + sum(reach)
    inside |= edges_blind(data, config)
    uncovered = (events["tags"] & TAG_UNCOVERED) != 0
    np.testing.assert_array_equal(uncovered, inside[np.argsort(t, kind="stable")])
    s = eb.summary
    assert s["events"]["uncovered"] == np.count_nonzero(inside)
    assert s["uncovered_ns"][STREAM_NAMES[stream]] == hi - lo
    assert s["gaps_ns"][STREAM_NAMES[stream]]["line"] == hi - lo
    ref, _, ref_eb = build(config, batches)
    extra = sum(s["exposure_uncovered_ns"].values()) - sum(
        ref_eb.summary["exposure_uncovered_ns"].values()
    )
    assert extra == blinded  # the gap lies well inside the run: its whole reach is removed
    assert total.hist[:, Category.UNCOVERED].sum() == np.count_nonzero(inside)
    # the covered events are tagged exactly as without the gap
    covered = ~uncovered
    ref_tags = build(config, batches)[1]["tags"]
    np.testing.assert_array_equal(events["tags"][covered], ref_tags[covered])
    assert [g.reason for g in total.gaps if g.stream == STREAM_NAMES[stream]].count(Loss.LINE) == 1


def test_gaps_and_exposure_do_not_depend_on_arrival_order():
    config = small_config()
    _, batches = random_run(seed=22)
    wm = {b.seq: b.watermark_ns for b in batches if b.stream == Stream.ACV}
    batches = with_gap(batches, Stream.ACV, 5, Loss.RECONNECT, (wm[4] + wm[5]) // 2)
    batches = [b for b in batches if not (b.stream == Stream.CRV and b.seq == 9)]
    ref, ref_events, _ = build(config, batches)
    assert ref.exposure["on"].uncovered_ns + ref.exposure["off"].uncovered_ns > 0
    rng = np.random.default_rng(5)
    for _ in range(10):
        shuffled = [batches[i] for i in rng.permutation(len(batches))]
        total, events, _ = build(config, shuffled, advance_every=int(rng.integers(1, 6)))
        assert_same(total, events, ref, ref_events)
        assert sorted(map(astuple_gap, total.gaps)) == sorted(map(astuple_gap, ref.gaps))


def astuple_gap(gap):
    return (gap.stream, int(gap.reason), gap.start_ns, gap.end_ns)


def forged(stream, seq, watermark_ns, pulses_=None) -> Batch:
    return Batch(
        KIND_DATA,
        int(stream),
        RUN,
        seq,
        watermark_ns,
        pulses([])[:0] if pulses_ is None else pulses_,
    )


@pytest.mark.parametrize(
    "batch, slot",
    [
        (forged(Stream.ACV, 4, 2**61), True),  # a watermark far in the future
        (forged(Stream.ACV, 4, 1_000, pulses([2**61])), True),  # a pulse after its watermark
        (forged(Stream.ACV, 4 + 400, 2**61), False),  # a future seq: held, refused when due
        (forged(Stream.ACV, 10**6, 2**61), False),  # beyond the pending window: no slot
    ],
)
def test_a_forged_batch_never_disables_a_veto(batch, slot):
    """A forged AC message takes at most the slot it claims: the veto goes on tagging."""
    config = small_config()
    config.builder.max_lead_s = 1000.0
    data, batches = random_run(seed=23, n_batches=25)
    ref, ref_events, _ = build(config, batches)
    genuine = [b for b in batches if not (b.stream == Stream.ACV and b.seq == batch.seq)]
    arrived = [*genuine[:10], batch, *genuine[10:]]  # early, with the first batches
    _, events, eb = build(config, arrived)
    s = eb.summary
    assert s["rejected_messages"] >= 1
    assert any("acv" in reason for reason in s["rejections"])
    covered = (events["tags"] & TAG_UNCOVERED) == 0
    np.testing.assert_array_equal(events["tags"][covered], ref_events["tags"][covered])
    lost = s["uncovered_ns"]["acv"]
    if slot:  # the forged batch took a genuine one's slot: blind up to the next good watermark
        wm = {b.seq: b.watermark_ns for b in batches if b.stream == Stream.ACV}
        assert lost == wm[batch.seq + 1] - wm[batch.seq - 1]
    else:
        assert lost == 0
    assert np.count_nonzero(covered) > 0.9 * len(covered)


def test_oversized_batches_are_refused_and_their_slot_is_a_gap():
    config = small_config()
    rng = np.random.default_rng(2)
    t = np.sort(rng.integers(10_000, 20_000, config.builder.max_batch_pulses + 1))
    batches = [
        *stream_batches(Stream.HPGE, pulses([15_000, 40_000]), 0, 50_000, [20_000, 30_000]),
        *stream_batches(Stream.ACV, pulses(t), 0, 50_000, [20_000, 30_000]),
        *stream_batches(Stream.CRV, pulses([])[:0], 0, 50_000, [20_000, 30_000]),
    ]
    _, events, eb = build(config, batches, streams=(0, 1, 2), reactor_on=False)
    s = eb.summary
    assert s["rejections"] == {"acv: more pulses than builder.max_batch_pulses": 1}
    assert s["gaps_ns"]["acv"]["rejected"] == 30_000  # up to the next good batch's watermark
    assert events["tags"].tolist()[0] & TAG_UNCOVERED  # 15 us: blind
    assert not events["tags"].tolist()[1] & TAG_UNCOVERED  # 40 us: covered


# --- restarts: a sender rejoins the run as a new incarnation ------------------------------------


def restarted(batches, stream, last_applied, rejoin_at, incarnation=1):
    """The batches with the sender of ``stream`` dying after seq ``last_applied`` (what it sent
    up to seq ``rejoin_at`` never arrives) and rejoining as ``incarnation``: its BOR at the
    watermark of seq ``rejoin_at`` (the device's new start), the later batches renumbered."""
    out = []
    shift = incarnation << INCARNATION_SHIFT
    for b in batches:
        if b.stream != stream or b.seq <= last_applied:
            out.append(b)
        elif b.seq == rejoin_at:
            out.append(Batch(KIND_BOR, b.stream, b.run, shift, b.watermark_ns, pulses([])[:0]))
        elif b.seq > rejoin_at:
            number = b.seq - rejoin_at
            out.append(replace(b, seq=shift | number))
    return out


def replace(batch, **fields) -> Batch:
    values = {f: getattr(batch, f) for f in Batch.__slots__}
    return Batch(**(values | fields))


@pytest.mark.parametrize("stream", [Stream.HPGE, Stream.ACV, Stream.CRV])
def test_a_restarted_sender_rejoins_and_its_absence_is_a_restart_gap(stream):
    config = small_config()
    data, batches = random_run(seed=31)
    wm = {b.seq: b.watermark_ns for b in batches if b.stream == stream}
    lo, hi = wm[8], wm[12]
    total, events, eb = build(config, restarted(batches, stream, 8, 12))
    t = np.sort(data[Stream.HPGE]["t_ns"], kind="stable")
    kept = ~((t >= lo) & (t < hi)) if stream == Stream.HPGE else np.ones(len(t), bool)
    sorted_data = {
        **data,
        Stream.HPGE: data[Stream.HPGE][np.argsort(data[Stream.HPGE]["t_ns"], kind="stable")],
    }
    inside = edges_blind(sorted_data, config)
    if stream != Stream.HPGE:
        inside |= veto_blind(sorted_data, stream, lo, hi, config)
    uncovered = (events["tags"] & TAG_UNCOVERED) != 0
    np.testing.assert_array_equal(uncovered, inside[kept])
    ref_tags = build(config, batches)[1]["tags"][kept]
    np.testing.assert_array_equal(events["tags"][~uncovered], ref_tags[~uncovered])
    s = eb.summary
    name = STREAM_NAMES[stream]
    assert s["gaps_ns"][name] == {"restart": hi - lo}
    assert s["no_eor"] == [] and s["rejected_messages"] == 0
    lost_pulses = np.count_nonzero((data[stream]["t_ns"] >= lo) & (data[stream]["t_ns"] < hi))
    assert s["pulses"][name] == len(data[stream]) - lost_pulses


def test_a_restart_gives_the_same_result_for_any_arrival_order_of_each_incarnation():
    config = small_config()
    _, batches = random_run(seed=32)
    batches = restarted(batches, Stream.ACV, 5, 9)
    ref, ref_events, _ = build(config, batches)
    old = [b for b in batches if b.stream == Stream.ACV and b.incarnation == 0]
    rest = [b for b in batches if not (b.stream == Stream.ACV and b.incarnation == 0)]
    rng = np.random.default_rng(7)
    for _ in range(8):
        arrived = [old[i] for i in rng.permutation(len(old))]
        arrived += [rest[i] for i in rng.permutation(len(rest))]
        total, events, _ = build(config, arrived, advance_every=int(rng.integers(1, 6)))
        assert_same(total, events, ref, ref_events)


def test_batches_of_a_replaced_incarnation_are_refused_and_change_nothing():
    config = small_config()
    _, batches = random_run(seed=33)
    rejoined = restarted(batches, Stream.CRV, 5, 9)
    ref, ref_events, _ = build(config, rejoined)
    straggler = next(b for b in batches if b.stream == Stream.CRV and b.seq == 7)
    bor = next(i for i, b in enumerate(rejoined) if b.stream == Stream.CRV and b.seq == 1 << 48)
    late = [*rejoined[: bor + 1], straggler, *rejoined[bor + 1 :]]
    total, events, eb = build(config, late)
    assert eb.summary["rejections"] == {"crv: from an earlier incarnation of its sender": 1}
    np.testing.assert_array_equal(total.hist, ref.hist)
    assert events.tobytes() == ref_events.tobytes()


def test_a_refused_incarnation_takes_no_slot_and_the_running_one_goes_on():
    """A new incarnation's BOR that the live builder refused (run control never announced
    it) ends nothing: the genuine sender's batches are built as if it never came."""
    config = small_config()
    _, batches = random_run(seed=34)
    ref, ref_events, _ = build(config, batches)
    forged_bor = Batch(
        KIND_BOR | REFUSED_UNANNOUNCED_RESTART, int(Stream.ACV), RUN, 5 << 48, 10**6, pulses([])[:0]
    )
    total, events, eb = build(config, [*batches[:20], forged_bor, *batches[20:]])
    assert eb.summary["rejections"] == {
        "acv: refused by the live builder: an incarnation run control did not announce": 1
    }
    np.testing.assert_array_equal(total.hist, ref.hist)
    assert events.tobytes() == ref_events.tobytes()


def test_a_batch_refused_ahead_of_the_clock_keeps_its_slot_as_a_gap():
    config = small_config()
    _, batches = random_run(seed=35)
    wm = {b.seq: b.watermark_ns for b in batches if b.stream == Stream.ACV}
    flagged = [
        replace(b, kind=b.kind | REFUSED_AHEAD_OF_CLOCK)
        if b.stream == Stream.ACV and b.seq == 6
        else b
        for b in batches
    ]
    _, _, eb = build(config, flagged)
    s = eb.summary
    assert s["gaps_ns"]["acv"] == {"rejected": wm[7] - wm[5]}
    assert s["rejected_messages"] == 1


def test_no_incarnation_rejoins_after_the_end_of_run():
    config = small_config()
    _, batches = random_run(seed=36)
    eor = max(b.seq for b in batches if b.stream == Stream.CRV)
    t_end = max(b.watermark_ns for b in batches)
    late_bor = Batch(KIND_BOR, int(Stream.CRV), RUN, 1 << 48, t_end + 10, pulses([])[:0])
    ref, ref_events, _ = build(config, batches)
    total, events, eb = build(config, [*batches, late_bor])
    assert eb.summary["rejections"] == {"crv: after the end-of-run": 1}
    assert eor < 1 << 48
    np.testing.assert_array_equal(total.hist, ref.hist)


def test_an_incarnation_whose_bor_was_lost_is_taken_at_the_end():
    """Batches of a new incarnation without its BOR are applied at the end of the run (the
    time before its first batch is a restart gap), never silently dropped."""
    config = small_config()
    data, batches = random_run(seed=37)
    rejoined = [
        b
        for b in restarted(batches, Stream.ACV, 5, 9)
        if not (b.stream == Stream.ACV and b.seq == 1 << 48)
    ]
    _, _, eb = build(config, rejoined)
    s = eb.summary
    assert set(s["gaps_ns"]["acv"]) == {"restart"}
    wm = {b.seq: b.watermark_ns for b in batches if b.stream == Stream.ACV}
    assert s["gaps_ns"]["acv"]["restart"] == wm[10] - wm[5]
    assert s["pulses"]["acv"] == np.count_nonzero(
        (data[Stream.ACV]["t_ns"] < wm[5]) | (data[Stream.ACV]["t_ns"] >= wm[9])
    )
