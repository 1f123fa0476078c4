"""The serial frame codec: round trips, resynchronisation, and no invented frames."""

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daq.core.errors import ProtocolError
from daq.core.records import PULSE_DTYPE
from daq.formats.protocol import (
    FRAME_DATA,
    FRAME_END,
    MAX_RECORDS,
    FrameDecoder,
    encode_frame,
    parse_keyvalues,
    parse_reply,
)


def make_pulses(rng: np.random.Generator, n: int) -> np.ndarray:
    p = np.zeros(n, PULSE_DTYPE)
    p["t_ns"] = np.sort(rng.integers(0, 10**12, n))
    p["adc"] = rng.integers(0, 2**32, n, dtype=np.uint64)
    p["channel"] = rng.integers(0, 4, n)
    p["flags"] = rng.integers(0, 2, n)
    return p


def frames_bytes(seed: int, n_frames: int) -> tuple[bytes, list[tuple[int, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    sent = []
    chunks = []
    for counter in range(n_frames):
        pulses = make_pulses(rng, int(rng.integers(0, 50)))
        chunks.append(encode_frame(FRAME_DATA, counter, 1000 * counter, 7, pulses))
        sent.append((counter, pulses))
    return b"".join(chunks), sent


def test_round_trip_in_arbitrary_chunks():
    data, sent = frames_bytes(1, 40)
    decoder = FrameDecoder()
    got = []
    rnd = random.Random(2)
    pos = 0
    while pos < len(data):
        step = rnd.randint(1, 300)
        got += decoder.feed(data[pos : pos + step])
        pos += step
    assert [f.counter for f in got] == [c for c, _ in sent]
    for frame, (_, pulses) in zip(got, sent, strict=True):
        assert np.array_equal(frame.pulses, pulses)
        assert frame.dead_ns == 7
    assert decoder.stats.crc_errors == decoder.stats.missing_frames == 0
    assert decoder.stats.skipped_bytes == 0


def test_noise_and_corruption_are_counted_and_skipped():
    data, sent = frames_bytes(3, 10)
    frames = [encode_frame(FRAME_DATA, c, 0, 0, p) for c, p in sent]
    damaged = bytearray(frames[3])
    damaged[40] ^= 0x10  # corrupt frame 3 (payload bit flip)
    stream = b"".join(frames[:3]) + b"\x00garbage\xa5\x5a" + bytes(damaged) + b"".join(frames[4:])
    decoder = FrameDecoder()
    got = decoder.feed(stream)
    assert [f.counter for f in got] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert decoder.stats.crc_errors + decoder.stats.bad_headers >= 1
    assert decoder.stats.missing_frames == 1
    assert decoder.stats.skipped_bytes >= len(b"\x00garbage\xa5\x5a")


def test_dropped_bytes_lose_only_the_damaged_frame():
    data, sent = frames_bytes(4, 6)
    frames = [encode_frame(FRAME_DATA, c, 0, 0, p) for c, p in sent]
    frames[2] = frames[2][:10] + frames[2][13:]
    decoder = FrameDecoder()
    got = decoder.feed(b"".join(frames))
    got += decoder.feed(b"")
    decoder.abandon_partial()
    got += decoder.feed(encode_frame(FRAME_END, 6, 0, 0, np.zeros(0, PULSE_DTYPE)))
    assert [f.counter for f in got] == [0, 1, 3, 4, 5, 6]
    assert got[-1].kind == FRAME_END
    assert decoder.stats.missing_frames == 1


def test_frame_size_limit():
    with pytest.raises(ProtocolError, match="MAX_RECORDS"):
        encode_frame(FRAME_DATA, 0, 0, 0, np.zeros(MAX_RECORDS + 1, PULSE_DTYPE))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n_frames=st.integers(1, 8),
    damage=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 2)), max_size=8),
)
def test_damage_never_invents_a_frame(seed, n_frames, damage):
    """Whatever is done to the bytes, every decoded frame is one that was sent, in order."""
    data, sent = frames_bytes(seed, n_frames)
    buf = bytearray(data)
    for pos, action in damage:
        if not buf:
            break
        pos %= len(buf)
        if action == 0:
            buf[pos] ^= 0xFF
        elif action == 1:
            del buf[pos]
        else:
            buf.insert(pos, pos & 0xFF)
    decoder = FrameDecoder()
    got = decoder.feed(bytes(buf))
    by_counter = dict(sent)
    counters = [f.counter for f in got]
    assert counters == sorted(set(counters))
    for frame in got:
        assert np.array_equal(frame.pulses, by_counter[frame.counter])


def test_text_replies():
    assert parse_reply(b"OK 12345\n") == ["12345"]
    assert parse_keyvalues(parse_reply(b"OK A=1 B=x\n")) == {"A": "1", "B": "x"}
    with pytest.raises(ProtocolError, match="refused: bad key"):
        parse_reply(b"ERR bad key\n")
    with pytest.raises(ProtocolError, match="unexpected reply"):
        parse_reply(b"\xff\xfe\n")
