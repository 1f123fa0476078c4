"""The fsync figures of ``nudaq bench``: measured paced on the data directory's disk, shown
beside the same writing without fsync."""

from __future__ import annotations

from daq.core.config import Config
from hardware_sim.bench import fsync
from hardware_sim.bench.run import print_table
from tests.hardware_sim.test_bench import QUICK


def test_the_fsync_policy_is_measured_beside_no_fsync(tmp_path, monkeypatch):
    monkeypatch.setenv("NUDAQ_DATA_DIR", str(tmp_path))
    config = Config()
    config.builder.raw_fsync_interval_s = 0.0  # every flush: one a second here
    r = fsync.compare(seconds=2, rounds=1, config=config)
    assert r["raw_write_dir"] == str(tmp_path) and list(tmp_path.iterdir()) == []
    assert r["raw_write_data_s"] == 2 and r["raw_fsync_interval_s"] == 0.0
    assert r["raw_fsyncs"] >= 2  # at the flushes, and at the close
    for key in ("raw_write_ms_per_s", "raw_write_worst_tick_ms"):
        assert set(r[key]) == {"fsync", "no_fsync"}
        assert all(v > 0 for v in r[key].values())
    assert r["raw_fsync_ms_per_s"] > 0


def test_the_table_shows_the_fsync_rows(capsys):
    figures = QUICK | {
        "raw_write_pulses_per_s": 300_000,
        "raw_fsync_interval_s": 1.0,
        "raw_write_ms_per_s": {"fsync": 12.5, "no_fsync": 10.0},
        "raw_write_worst_tick_ms": {"fsync": 30.0, "no_fsync": 20.0},
        "raw_fsyncs": 7,
        "raw_fsync_ms_per_s": 4.25,
    }
    print_table(figures)
    out = capsys.readouterr().out
    assert "300,000" in out and "slowest tick" in out  # labels wrap: words only
    assert "12.50" in out and "10.00" in out and "1.25" in out  # writer ms/s, ratio
    assert "30.00" in out and "20.00" in out and "1.50" in out  # slowest tick, ratio
    assert "4.25" in out  # the fsyncs' own time
