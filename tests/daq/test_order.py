"""The order rules of a stream's batches (daq.build.order), shared by builder and replay."""

from __future__ import annotations

import numpy as np

from daq.build.order import StreamOrder


def test_a_chunk_is_joined_only_where_the_builder_takes_each_batch():
    """A chunk is accepted only where each of its batches would be, one after the other."""
    state = StreamOrder()
    state.advance(np.array([90]), 100)  # complete below 100 ns, last pulse at 90 ns
    t = np.array([100, 150, 210, 260])
    counts, wm = np.array([2, 0, 2]), np.array([200, 200, 300])

    def accepts(times, n=counts, marks=wm):
        return state.accepts_chunk(np.array(times), n, marks)

    assert accepts(t)
    assert not accepts([100, 150, 199, 260])  # 3rd batch starts below the 2nd's watermark
    assert not accepts([100, 150, 260, 210])  # not time-ordered
    assert not accepts([99, 150, 210, 260])  # below what the stream had completed
    assert not accepts(t, marks=np.array([99, 200, 300]))  # watermark going back
    state.advance(np.array([120]), 120)
    later = np.array([130, 200, 300])
    assert not accepts([119, 150, 210, 260], marks=later)  # before the last pulse sent
    assert accepts([120, 150, 210, 260], marks=later)  # equal times are allowed


def test_one_batch_refusals_name_the_reason():
    state = StreamOrder()
    state.advance(np.array([90]), 100)
    assert state.refusal(np.array([100, 120]), 130) == ""
    assert "behind" in state.refusal(np.array([], dtype=np.int64), 99)
    assert "already complete" in state.refusal(np.array([95]), 130)
    assert not state.accepts(np.array([120, 110]), 130)  # not time-ordered
    assert state.accepts(np.array([100, 100]), 100)  # equal times, a watermark that stays
