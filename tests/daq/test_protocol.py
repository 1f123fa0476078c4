"""The serial frame codec: round trips, resynchronisation, and no invented frames."""

import itertools
import random
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daq.core.errors import ProtocolError
from daq.core.records import PULSE_DTYPE
from daq.drivers.listmode import QUIET_S, FrontendDriver
from daq.formats.protocol import (
    FRAME_DATA,
    FRAME_END,
    HEADER,
    HEADER_SIZE,
    MAX_RECORDS,
    SYNC,
    Frame,
    FrameDecoder,
    encode_frame,
    frame_size,
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


# -- property tests: any bytes, in any chunking, through the driver's read path ------------------


class ScriptedLine(FrontendDriver):
    """The real driver's ``read_frames`` over a scripted line instead of a serial port: each
    read returns the next chunk of the script; None is a silence longer than QUIET_S."""

    def __init__(self, script: list[bytes | None]) -> None:
        super().__init__("loop://")
        self.script = list(script)
        self.delivered = 0
        self.running = True

    def _read_available(self, max_wait_s: float) -> bytes:
        chunk = self.script.pop(0) if self.script else None
        if chunk is None:
            self.last_rx = time.monotonic() - QUIET_S
            return b""
        self.delivered += len(chunk)
        return chunk


def script_of(data: bytes, steps: list[tuple[int, bool]], quiet_inside: bool) -> list:
    """``data`` cut into chunks of the steps' sizes (cycled), a silence after the steps that ask
    for one if ``quiet_inside``, and always one at the end."""
    script: list[bytes | None] = []
    pos = 0
    for size, quiet in itertools.cycle(steps):
        if pos >= len(data):
            break
        script.append(data[pos : pos + size])
        pos += size
        if quiet and quiet_inside:
            script.append(None)
    return [*script, None]


def read_script(line: ScriptedLine) -> list[Frame]:
    """Every frame the driver reads from the script, the byte balance checked after each read."""
    frames: list[Frame] = []
    while line.script:
        frames += line.read_frames(0)
        assert_balance(line.delivered, frames, line.decoder)
    assert line.decoder.pending_bytes < len(SYNC)  # after the final silence: no candidate left
    line.close()
    return frames


def assert_balance(fed: int, frames: list[Frame], decoder: FrameDecoder) -> None:
    """Every byte fed is in a decoded frame, counted as skipped, or still pending."""
    in_frames = sum(frame_size(len(f.pulses)) for f in frames)
    assert fed == in_frames + decoder.stats.skipped_bytes + decoder.pending_bytes
    assert decoder.stats.frames == len(frames)
    assert decoder.stats.pulses == sum(len(f.pulses) for f in frames)


def reencoded(frame: Frame) -> bytes:
    return encode_frame(frame.kind, frame.counter, frame.watermark_ns, frame.dead_ns, frame.pulses)


small_pulses = st.builds(
    lambda seed, n: make_pulses(np.random.default_rng(seed), n),
    st.integers(0, 2**32),
    st.integers(0, 6),
)
any_frame = st.builds(
    encode_frame,
    st.sampled_from((FRAME_DATA, FRAME_END)),
    st.integers(0, 2**32 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 2**32 - 1),
    small_pulses,
)
bare_header = st.builds(  # a good header whose records and CRC never come
    lambda kind, n, counter: HEADER.pack(SYNC, kind, 0, n, counter, 0, 0),
    st.sampled_from((FRAME_DATA, FRAME_END)),
    st.integers(0, MAX_RECORDS + 1),
    st.integers(0, 2**32 - 1),
)
noise = st.one_of(
    st.binary(max_size=64),
    st.just(SYNC),
    st.just(SYNC[:-1]),
    st.binary(max_size=HEADER_SIZE).map(lambda b: SYNC + b),
    bare_header,
)
byte_streams = st.lists(
    st.one_of(
        noise, any_frame, st.tuples(any_frame, st.integers(0, 80)).map(lambda t: t[0][: t[1]])
    ),
    max_size=24,
).map(b"".join)
chunk_steps = st.lists(st.tuples(st.integers(1, 256), st.booleans()), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(data=byte_streams, steps=chunk_steps)
def test_any_byte_stream_is_decoded_skipped_or_pending(data, steps):
    """Noise, sync words, bare and random headers, frames whole and cut, in any chunking and
    with silences anywhere: nothing raises, the bytes balance after every read, and every
    decoded frame is a slice of the input."""
    frames = read_script(ScriptedLine(script_of(data, steps, quiet_inside=True)))
    for frame in frames:
        assert reencoded(frame) in data


sent_frame = st.tuples(
    st.integers(0, 2**63 - 1), st.integers(0, 2**32 - 1), small_pulses
)  # watermark, dead time, pulses
damage_op = st.tuples(
    st.integers(0, 7),  # which frame (mod their number)
    st.integers(0, 10**4),  # where in it (mod its length)
    st.sampled_from(("flip", "delete", "insert")),
    st.integers(0, 255),  # the bit (mod 8) to flip, or the byte to insert
)


@settings(max_examples=150, deadline=None)
@given(
    sent=st.lists(sent_frame, min_size=1, max_size=8),
    damage=st.lists(damage_op, max_size=6),
    garbage=st.lists(st.tuples(st.integers(0, 8), noise), max_size=4),
    steps=chunk_steps,
)
def test_damaged_frame_streams_lose_only_the_damaged_frames(sent, damage, garbage, steps):
    """Valid frames with bit flips, deleted and inserted bytes, noise between them, in any
    chunking: every decoded frame is one that was sent, in order; every untouched frame is
    decoded; counter gaps count the rest; the bytes balance after every read."""
    frames = [
        bytearray(encode_frame(FRAME_DATA, counter, wm, dead, pulses))
        for counter, (wm, dead, pulses) in enumerate(sent)
    ]
    damaged = set()
    for which, where, op, value in damage:
        which %= len(frames)
        damaged.add(which)
        frame = frames[which]
        where %= len(frame)
        if op == "flip":
            frame[where] ^= 1 << (value % 8)
        elif op == "delete":
            del frame[where]
        else:
            frame.insert(where, value)
    pieces = [bytes(f) for f in frames]
    for where, junk in garbage:
        pieces.insert(where % (len(pieces) + 1), junk)
    data = b"".join(pieces)

    line = ScriptedLine(script_of(data, steps, quiet_inside=False))
    got = read_script(line)

    counters = [f.counter for f in got]
    assert counters == sorted(set(counters))
    for frame in got:
        wm, dead, pulses = sent[frame.counter]
        assert (frame.kind, frame.watermark_ns, frame.dead_ns) == (FRAME_DATA, wm, dead)
        assert np.array_equal(frame.pulses, pulses)
    assert set(range(len(sent))) - damaged <= set(counters)
    assert line.stats.missing_frames == (counters[-1] + 1 - len(got) if got else 0)
    if not damage and not garbage:
        assert len(got) == len(sent) and line.stats.skipped_bytes == 0


def test_text_replies():
    assert parse_reply(b"OK 12345\n") == ["12345"]
    assert parse_keyvalues(parse_reply(b"OK A=1 B=x\n")) == {"A": "1", "B": "x"}
    with pytest.raises(ProtocolError, match="refused: bad key"):
        parse_reply(b"ERR bad key\n")
    with pytest.raises(ProtocolError, match="unexpected reply"):
        parse_reply(b"\xff\xfe\n")
