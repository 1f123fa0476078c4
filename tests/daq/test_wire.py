"""ZeroMQ batch layout: zero-copy round trip and rejection of malformed messages."""

from unittest import mock

import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from daq.core.errors import WireError
from daq.core.records import PULSE_DTYPE, Stream
from daq.formats import wire
from daq.formats.wire import HEADER, KIND_DATA, KIND_EOR, KIND_NAMES, Batch, decode, send_batch


@pytest.fixture
def pair():
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind("inproc://wire-test")
    push = ctx.socket(zmq.PUSH)
    push.connect("inproc://wire-test")
    yield push, pull
    push.close(0)
    pull.close(0)
    ctx.term()


def test_round_trip(pair):
    push, pull = pair
    pulses = np.zeros(1000, PULSE_DTYPE)
    pulses["t_ns"] = np.arange(1000) * 17
    pulses["adc"] = np.arange(1000)
    send_batch(push, Batch(KIND_DATA, Stream.ACV, 7, 3, 20_000, pulses, 5, 2, 1))
    send_batch(push, Batch(KIND_EOR, Stream.ACV, 7, 4, 30_000, pulses[:0]))
    got = decode(pull.recv_multipart(copy=False))
    assert (got.kind, got.stream, got.run, got.seq, got.watermark_ns) == (
        KIND_DATA,
        1,
        7,
        3,
        20_000,
    )
    assert (got.dead_ns, got.dropped, got.lost_frames) == (5, 2, 1)
    assert np.array_equal(got.pulses, pulses)
    eor = decode(pull.recv_multipart())
    assert eor.kind == KIND_EOR and len(eor.pulses) == 0


def header_of(batch: Batch, **constants: object) -> bytes:
    """The header ``batch`` packs to, with module constants of daq.formats.wire (MAGIC,
    VERSION) replaced: malformed headers without knowing the layout's offsets."""
    with mock.patch.multiple(wire, **constants):
        return batch.header()


def batch_of(kind: int = KIND_DATA, stream: int = Stream.HPGE, n: int = 0) -> Batch:
    return Batch(kind=kind, stream=stream, run=1, seq=0, watermark_ns=0, pulses=pulses_of(n))


def pulses_of(n: int) -> np.ndarray:
    return np.zeros(n, PULSE_DTYPE)


@pytest.mark.parametrize(
    "parts, message",
    [
        ([b"x"], "expected 2 message parts"),
        ([b"short", b""], "header is 5 bytes"),
        ([header_of(batch_of(), MAGIC=b"XX"), b""], "bad magic"),
        ([header_of(batch_of(), VERSION=wire.VERSION + 1), b""], "unsupported wire version"),
        ([batch_of(kind=7).header(), b""], "unknown message kind"),
        ([batch_of(stream=9).header(), b""], "unknown stream id 9"),
        ([batch_of(n=2).header(), b"\0" * 31], "payload is 31 bytes"),
    ],
)
def test_malformed_messages_are_named(parts, message):
    with pytest.raises(WireError, match=message):
        decode(parts)


# -- property tests: arbitrary and mutated messages ------------------------------------------------
# Valid messages are built through Batch and HEADER only, never from the layout's offsets, so
# these tests hold whatever fields the header gains.

stream_ids = st.sampled_from([int(s) for s in Stream])
kinds = st.sampled_from(sorted(KIND_NAMES))
u32 = st.integers(0, 2**32 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def batches(draw) -> Batch:
    """A valid batch: any kind, stream and header counts, a few pulses of random bytes."""
    n = draw(st.integers(0, 8))
    raw = draw(st.binary(min_size=n * PULSE_DTYPE.itemsize, max_size=n * PULSE_DTYPE.itemsize))
    return Batch(
        kind=draw(kinds),
        stream=draw(stream_ids),
        run=draw(u32),
        seq=draw(st.integers(0, 2**64 - 1)),
        watermark_ns=draw(i64),
        pulses=np.frombuffer(raw, PULSE_DTYPE),
        dead_ns=draw(i64),
        dropped=draw(u32),
        lost_frames=draw(u32),
    )


def message_of(batch: Batch) -> list[bytes]:
    """The message parts of a batch as received: header and payload bytes."""
    return [batch.header(), batch.pulses.tobytes()]


def as_received(parts: list[bytes], kind: str) -> list:
    """The parts as bytes, bytearray, memoryview or zmq.Frame (what recv_multipart gives)."""
    wrap = {"bytes": bytes, "bytearray": bytearray, "memoryview": memoryview, "frame": zmq.Frame}
    return [wrap[kind](p) for p in parts]


@st.composite
def mutated(draw, parts: list[bytes]) -> list[bytes]:
    """``parts`` after a few random edits: bit flips, byte insertions and deletions, a
    part cut, grown, split, joined, dropped or added."""
    parts = [bytearray(p) for p in parts]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "cut", "grow", "split", "join"]))
        if op in ("split", "join") or not parts:
            if op == "split" and parts:
                i = draw(st.integers(0, len(parts) - 1))
                at = draw(st.integers(0, len(parts[i])))
                parts[i : i + 1] = [parts[i][:at], parts[i][at:]]
            elif op == "join" and len(parts) > 1:
                parts[0:2] = [parts[0] + parts[1]]
            else:
                parts.append(bytearray(draw(st.binary(max_size=64))))
            continue
        part = parts[draw(st.integers(0, len(parts) - 1))]
        at = draw(st.integers(0, len(part)))
        if op == "flip" and part:
            part[at % len(part)] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            part[at:at] = draw(st.binary(min_size=1, max_size=PULSE_DTYPE.itemsize))
        elif op == "delete":
            del part[at : at + draw(st.integers(1, PULSE_DTYPE.itemsize))]
        elif op == "cut":
            del part[at:]
        elif op == "grow":
            part += draw(st.binary(min_size=1, max_size=2 * PULSE_DTYPE.itemsize))
    return [bytes(p) for p in parts]


received_as = st.sampled_from(["bytes", "bytearray", "memoryview", "frame"])


def decode_or_reject(parts: list) -> Batch | None:
    """The decoded batch, or None when decode raised WireError (nothing else may escape)."""
    try:
        return decode(parts)
    except WireError:
        return None


def assert_reencodes(parts: list[bytes], batch: Batch) -> None:
    """A message that decodes is exactly the message its batch encodes to (a decoder that
    ignores some bytes, reserved ones say, would let a damaged header pass for a good one)."""
    got = [bytes(p) for p in parts]
    again = message_of(batch)
    differ = [i for i, (a, b) in enumerate(zip(again[0], got[0], strict=True)) if a != b]
    assert again == got, f"decoded, but re-encodes differently at header bytes {differ}"


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.binary(max_size=2 * HEADER.size), max_size=4), kind=received_as)
def test_arbitrary_part_lists_raise_only_wire_errors(parts, kind):
    batch = decode_or_reject(as_received(parts, kind))
    if batch is not None:
        assert_reencodes(parts, batch)


@settings(max_examples=200, deadline=None)
@given(batch=batches(), kind=received_as)
def test_valid_messages_decode_to_their_batch(batch, kind):
    parts = message_of(batch)
    got = decode(as_received(parts, kind))
    assert_reencodes(parts, got)
    assert (got.kind, got.stream, got.run, got.seq, got.watermark_ns) == (
        batch.kind,
        batch.stream,
        batch.run,
        batch.seq,
        batch.watermark_ns,
    )
    assert (got.dead_ns, got.dropped, got.lost_frames) == (
        batch.dead_ns,
        batch.dropped,
        batch.lost_frames,
    )


@settings(max_examples=200, deadline=None)
@given(data=st.data(), batch=batches(), kind=received_as)
def test_mutated_messages_raise_only_wire_errors_or_reencode(data, batch, kind):
    parts = data.draw(mutated(message_of(batch)))
    got = decode_or_reject(as_received(parts, kind))
    if got is not None:
        assert_reencodes(parts, got)


@settings(max_examples=20, deadline=None)
@given(batch=batches())
def test_every_header_bit_flip_is_rejected_or_reencodes(batch):
    """Each of the header's bits flipped in turn: rejected, or a message that is exactly its
    own re-encoding (never a header byte that decode lets pass unread)."""
    header, payload = message_of(batch)
    for bit in range(8 * len(header)):
        flipped = bytearray(header)
        flipped[bit // 8] ^= 1 << (bit % 8)
        got = decode_or_reject([bytes(flipped), payload])
        if got is not None:
            assert_reencodes([bytes(flipped), payload], got)
