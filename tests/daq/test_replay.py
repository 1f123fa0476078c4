"""Replay building blocks in one process: the raw-file index, re-chunking, scans, variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daq.build.increments import BuildUpdate
from daq.core.config import Config
from daq.core.errors import ConfigError, RawFileError
from daq.core.overrides import with_overrides
from daq.core.records import Stream
from daq.formats.rawfile import EVENTS, PULSES, RawReader, RawWriter, raw_path
from daq.formats.rawindex import INDEX_DTYPE, _room, scan_pulses
from daq.formats.wire import KIND_DATA, Batch
from daq.kernels.tagging import tag_window
from daq.replay.plan import _Plan, shuffled
from daq.replay.scan import parse_scan
from hardware_sim.bench.synthetic import Rates, write_synthetic_run
from hardware_sim.bench.tagging import tag_merge_asof, tag_searchsorted
from tests.daq.test_eventbuilder import build as build_in_order
from tests.daq.test_rawfile import write_format_1

RATES = Rates(hpge_hz=200.0, acv_hz=2000.0, crv_hz=500.0, rt_hz=20.0)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """A 60 s synthetic run (reactor trip, dead time, partners) as the builder records it."""
    prefix = tmp_path_factory.mktemp("raw") / "run000003"
    write_synthetic_run(prefix, 3, 60.0, RATES, batch_s=0.05, seed=5)
    return raw_path(prefix, PULSES)


def build(batches, config: Config | None = None) -> tuple[BuildUpdate, np.ndarray, dict]:
    """Feed batches to one EventBuilder; the summed update, the events by time, the summary."""
    total, events, eb = build_in_order(config or Config(), batches, run=3)
    return total, np.sort(events, order="t_ns"), eb.summary


def assert_same_build(a, b) -> None:
    (ua, ea, sa), (ub, eb_, sb) = a, b
    assert np.array_equal(ua.hist, ub.hist)
    assert ua.exposure == ub.exposure
    assert ua.streams == ub.streams
    assert ua.reactor_changes == ub.reactor_changes
    assert ea.tobytes() == eb_.tobytes()
    assert sa["events"] == sb["events"] and sa["rt_tags"] == sb["rt_tags"]


def planned(index, chunk_pulses: int, span_ns: int) -> list[Batch]:
    """Every stream's replay messages, interleaved by watermark as a builder might get them."""
    messages = [m for s in Stream for m in _Plan(index, s, chunk_pulses, span_ns).messages()]
    return sorted(messages, key=lambda m: (m.watermark_ns, m.stream))


def test_index_matches_raw_reader(synthetic):
    index = scan_pulses(synthetic)
    assert index.intact and index.run == 3
    recorded = list(RawReader(synthetic).iter_batches())
    assert len(index.batches) == len(recorded)
    for row, batch in zip(index.batches, recorded, strict=True):
        for key in ("kind", "stream", "run", "seq", "watermark_ns", "dead_ns", "dropped"):
            assert row[key] == getattr(batch, key)
    rows = np.arange(len(recorded))
    together = index.pulses(rows)
    assert together.tobytes() == np.concatenate([b.pulses for b in recorded]).tobytes()


def test_index_room_grows_and_zeroes_what_it_reserves():
    """The scan writes its index into uninitialised room: each reservation is zeroed, and
    growing keeps the rows written so far."""
    room = np.full((4, len(INDEX_DTYPE)), -7, dtype=np.int64)
    room[:3] = np.arange(3 * len(INDEX_DTYPE)).reshape(3, -1)
    kept = room[:3].copy()
    same = _room(room, 3, 1)
    assert same is room and not same[3].any()
    grown = _room(room, 3, 6)
    assert grown.shape[0] >= 9 and np.array_equal(grown[:3], kept) and not grown[3:9].any()


def test_index_rows_of_one_stream(synthetic):
    index = scan_pulses(synthetic)
    for stream in Stream:
        rows, batches = index.of_stream(int(stream))
        assert np.array_equal(rows, np.flatnonzero(index.batches["stream"] == stream))
        assert batches.dtype == INDEX_DTYPE and np.array_equal(batches, index.batches[rows])


def test_index_of_format_1_files(synthetic, tmp_path):
    recorded = list(RawReader(synthetic).iter_batches())
    path = tmp_path / "old.pulses.arrow"
    write_format_1(path, recorded)
    index, reference = scan_pulses(path), scan_pulses(synthetic)
    assert index.intact and len(index.batches) == len(recorded)
    for key in INDEX_DTYPE.names[6:] + ("n",):
        assert np.array_equal(index.batches[key], reference.batches[key])
    rows = np.arange(len(recorded))
    assert index.pulses(rows).tobytes() == reference.pulses(rows).tobytes()


def test_index_of_damaged_and_foreign_files(synthetic, tmp_path):
    data = synthetic.read_bytes()
    truncated = tmp_path / "truncated.pulses.arrow"
    truncated.write_bytes(data[: len(data) // 2 + 7])
    index = scan_pulses(truncated)
    assert not index.intact and "offset" in index.reason
    assert 0 < len(index.batches) < len(list(RawReader(synthetic).iter_batches()))
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x40
    damaged = tmp_path / "flipped.pulses.arrow"
    damaged.write_bytes(bytes(flipped))
    assert not scan_pulses(damaged).intact
    text = tmp_path / "notes.txt"
    text.write_text("not a raw file\n")
    with pytest.raises(RawFileError, match="not a nudaq raw file"):
        scan_pulses(text)
    events_prefix = tmp_path / "run000004"
    writer = RawWriter(events_prefix, 4, Config().snapshot())
    writer.close()
    with pytest.raises(RawFileError, match="not pulses"):
        scan_pulses(raw_path(events_prefix, EVENTS))


@pytest.mark.parametrize("chunk_pulses, span_s", [(1 << 17, 100.0), (5000, 2.0), (1, 0.01)])
def test_rechunked_replay_builds_what_the_recording_does(synthetic, chunk_pulses, span_s):
    reference = build(RawReader(synthetic).iter_batches())
    assert reference[2]["events"]["ac"] > 0 and reference[2]["events"]["crv"] > 0
    assert len(reference[0].reactor_changes) >= 2  # the trip: dead time on both sides
    messages = planned(scan_pulses(synthetic), chunk_pulses, int(span_s * 1e9))
    assert_same_build(reference, build(messages))


def test_shuffled_arrival_builds_the_same(synthetic):
    index = scan_pulses(synthetic)
    reference = build(RawReader(synthetic).iter_batches())
    for chunk_pulses in (0, 2000):
        per_stream = [
            list(shuffled(_Plan(index, s, chunk_pulses, 10**9).messages(), seed=s + 11))
            for s in Stream
        ]
        rng = np.random.default_rng(chunk_pulses)
        order = rng.permutation(np.concatenate([[i] * len(m) for i, m in enumerate(per_stream)]))
        queues = [iter(m) for m in per_stream]
        assert_same_build(reference, build(next(queues[i]) for i in order))


def test_irregular_streams_are_sent_as_recorded(synthetic, tmp_path):
    """A stream with a batch the builder rejects and a gap keeps the live result."""
    recorded = list(RawReader(synthetic).iter_batches())
    acv = [i for i, b in enumerate(recorded) if b.stream == Stream.ACV and len(b.pulses) > 3]
    bad = recorded[acv[10]]
    bad.pulses = bad.pulses[::-1].copy()  # not time-ordered: rejected, live and replay
    hpge = [i for i, b in enumerate(recorded) if b.stream == Stream.HPGE and b.kind == KIND_DATA]
    del recorded[hpge[20]]  # a missing batch
    prefix = tmp_path / "run000003"
    writer = RawWriter(prefix, 3, Config().snapshot())
    for batch in recorded:
        writer.write_batch(batch)
    writer.close()
    path = raw_path(prefix, PULSES)
    reference = build(RawReader(path).iter_batches())
    assert reference[0].streams["hpge"].missing_batches == 1
    assert reference[0].streams["acv"].rejected_messages == 1
    assert_same_build(reference, build(planned(scan_pulses(path), 5000, 10**9)))


def test_tagging_baselines_agree_with_the_kernel():
    rng = np.random.default_rng(3)
    ge = np.sort(rng.integers(0, 10**9, 5000))
    for veto_n in (100, 5000, 400_000):
        veto = np.sort(rng.integers(0, 10**9, veto_n))
        expected = tag_window(ge, veto, 5000, 1000)
        assert np.array_equal(tag_searchsorted(ge, veto, 5000, 1000), expected)
        assert np.array_equal(tag_merge_asof(ge, veto, 5000, 1000), expected)


def test_overrides_and_scans_are_validated():
    config = Config()
    assert with_overrides(config, {"builder.ac_window_ns": 2500}).builder.ac_window_ns == 2500
    assert config.builder.ac_window_ns == 1000
    for bad in ({"builder.ac_window": 1}, {"nosuch.key": 1}, {"builder": 1}):
        with pytest.raises(ConfigError, match="key"):
            with_overrides(config, bad)
    with pytest.raises(ConfigError, match="builder.ac_window_ns"):
        with_overrides(config, {"builder.ac_window_ns": -5})
    scan = parse_scan("builder.ac_window_ns=500, 1000,2000", config)
    assert scan.values == [500, 1000, 2000]
    assert [v["tag"] for v in scan.variants("w")] == [
        "w:builder.ac_window_ns=500",
        "w:builder.ac_window_ns=1000",
        "w:builder.ac_window_ns=2000",
    ]
    for bad in ("builder.ac_window_ns", "=1,2", "builder.ac_window_ns=1,1", "x.y=1"):
        with pytest.raises(ConfigError):
            parse_scan(bad, config)
