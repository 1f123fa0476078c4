"""Replay through real processes: a live simulated run, then ``nudaq replay`` of its raw file."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from daq.core.config import Config
from daq.core.errors import RawFileError
from daq.core.records import FLAG_RT, Stream
from daq.formats.rawfile import RawReader, RawWriter, raw_path

pytestmark = pytest.mark.slow
NUDAQ = [sys.executable, "-m", "daq.cli"]
SPEED = 10.0


def nudaq(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*NUDAQ, *args], capture_output=True, text=True, timeout=timeout)


def short_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="nq", dir="/tmp"))  # ipc paths stay short


@pytest.fixture(scope="module")
def live():
    """One live run (`nudaq up --sim --duration 30`) with enough HPGe events and random
    triggers to see veto windows at work; its data dir, summary and raw file."""
    data_dir = short_dir()
    config = Config()
    config.sim.flat_cpd = 300.0
    config.frontends.hpge.rt_rate_hz = 5.0
    config_file = data_dir / "live.json"
    config_file.write_text(config.snapshot())
    out = nudaq(
        "up",
        "--sim",
        "--duration",
        "30",
        "--speed",
        str(SPEED),
        "--json",
        "--config",
        str(config_file),
        "--data-dir",
        str(data_dir),
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert all(n == 0 for n in summary["lost"].values()), summary
    yield data_dir, summary, Path(summary["raw_file"])
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def work():
    path = short_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


TABLES = {
    "spectrum_bins": "reactor, category, bin, counts",
    "exposures": "reactor, elapsed_ns, uncovered_ns, dead_ns, dead_span_ns, live_ns, rt_events,"
    " rt_ac, rt_crv, rt_any, events_all, events_ac, events_crv, events_candidate,"
    " events_uncovered",
    "stream_stats": "stream, pulses, dropped, lost_frames, missing_batches, rejected_messages,"
    " dead_ns, uncovered_ns",
    "reactor_intervals": 'reactor, start_ns, end_ns, "power_MW"',  # quoted: PostgreSQL
    "coverage_gaps": "stream, reason, start_ns, end_ns",
}


def stored(db: Path, tag: str = "") -> dict[str, list]:
    """Every stored result row of a tag in an SQLite file (keyed by run number)."""
    return stored_at(f"sqlite:///{db}", tag)


def stored_at(url: str, tag: str = "") -> dict[str, list]:
    """Every stored result row of a tag (keyed by run number, not database ids)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        out = {
            table: sorted(
                conn.execute(
                    text(
                        f"SELECT r.number, {columns} FROM {table} t JOIN runs r"
                        " ON r.id = t.run_id WHERE t.tag = :tag"
                    ),
                    {"tag": tag},
                ).all()
            )
            for table, columns in TABLES.items()
        }
    engine.dispose()
    return out


def exposure_sums(db: Path, tag: str) -> dict[str, int]:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT sum(events_ac), sum(rt_ac), sum(events_crv), sum(events_all)"
                " FROM exposures WHERE tag = :tag"
            ),
            {"tag": tag},
        ).one()
    engine.dispose()
    return dict(zip(("events_ac", "rt_ac", "events_crv", "events_all"), row, strict=True))


def replay(*args: str, work: Path) -> subprocess.CompletedProcess:
    return nudaq("replay", *args, "--data-dir", str(work))


def truth_ac_tags(data_dir: Path, raw_file: Path, window_ns: int) -> dict[str, int]:
    """AC-tagged physics and random-trigger events that the simulator's truth predicts for
    an AC window of +-window_ns: recorded HPGe pulses of the run with a recorded AC pulse
    within the window (vetoes start before and stop after the HPGe ADC, so none is cut)."""
    from hardware_sim.generator import Origin
    from hardware_sim.truth import read_truth

    truth = read_truth(data_dir / "sim" / "truth.arrow")
    bounds = [
        b.watermark_ns
        for b in RawReader(raw_file).iter_batches()
        if b.stream == Stream.HPGE and b.kind in (2, 3)
    ]
    recorded = truth[truth["recorded"]]
    ge = recorded[
        (recorded["stream"] == Stream.HPGE)
        & (recorded["t_ns"] >= min(bounds))
        & (recorded["t_ns"] < max(bounds))
    ]
    ac = np.sort(recorded["t_ns"][recorded["stream"] == Stream.ACV])
    first = np.searchsorted(ac, ge["t_ns"] - window_ns, side="left")
    tagged = np.zeros(len(ge), bool)
    inside = first < len(ac)
    tagged[inside] = ac[first[inside]] <= ge["t_ns"][inside] + window_ns
    rt = (ge["flags"] & FLAG_RT) != 0
    assert np.count_nonzero(ge["origin"] == Origin.COMPTON) > 50  # partners to find
    return {
        "hpge": len(ge),
        "events_ac": int(np.count_nonzero(tagged & ~rt)),
        "rt_ac": int(np.count_nonzero(tagged & rt)),
    }


def test_replay_into_a_fresh_database_is_bit_identical(live, work):
    data_dir, summary, raw_file = live
    out = replay(str(raw_file), "--db", f"sqlite:///{work / 'fresh.sqlite'}", "--json", work=work)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["run"] == summary["run"] and result["tags"] == [""]
    assert {s: result["pulses"][s] for s in summary["pulses"]} == summary["pulses"]
    assert result["events"] == summary["events"]
    assert result["lost"] == summary["lost"]
    assert result["intact"] and result["pulses_per_s"] > 0 and result["wall_s"] > 0
    assert result["sha256_verified"] is False  # this database holds no digest of the file
    assert 0 < result["stream_s"] <= result["wall_s"]
    assert 0 < result["built_s"] <= result["wall_s"]  # the final commit comes after the build
    original = stored(data_dir / "nudaq.sqlite")
    assert original["spectrum_bins"] and original["exposures"]
    assert stored(work / "fresh.sqlite") == original


def test_shuffled_recorded_batches_give_the_same_result(live, work):
    data_dir, _, raw_file = live
    out = replay(
        str(raw_file),
        "--db",
        f"sqlite:///{work / 'shuffled.sqlite'}",
        "--chunk-pulses",
        "0",
        "--shuffle-seed",
        "7",
        "--json",
        work=work,
    )
    assert out.returncode == 0, out.stderr
    recorded = sum(1 for _ in RawReader(raw_file).iter_batches())
    assert sum(json.loads(out.stdout)["messages"].values()) == recorded
    assert stored(work / "shuffled.sqlite") == stored(data_dir / "nudaq.sqlite")


def test_new_windows_go_under_tags_as_the_truth_predicts(live, work):
    data_dir, summary, raw_file = live
    db = data_dir / "nudaq.sqlite"
    url = f"sqlite:///{db}"
    before = stored(db)
    refused = replay("1", "--db", url, work=work)
    assert refused.returncode == 2 and "--tag" in refused.stderr
    assert "Traceback" not in refused.stderr

    recorded = truth_ac_tags(data_dir, raw_file, Config().builder.ac_window_ns)
    assert recorded["hpge"] == summary["pulses"]["hpge"]
    assert exposure_sums(db, "")["events_ac"] == recorded["events_ac"]

    narrow = Config.model_validate_json((data_dir / "live.json").read_text())
    narrow.builder.ac_window_ns = 20
    config_file = work / "narrow.json"
    config_file.write_text(narrow.snapshot())
    out = replay("1", "--db", url, "--config", str(config_file), "--json", work=work)
    assert out.returncode == 0, out.stderr
    (tag,) = json.loads(out.stdout)["tags"]
    assert tag.startswith("config-")
    expected = truth_ac_tags(data_dir, raw_file, 20)
    got = exposure_sums(db, tag)
    assert (got["events_ac"], got["rt_ac"]) == (expected["events_ac"], expected["rt_ac"])
    assert got["events_ac"] < exposure_sums(db, "")["events_ac"]
    assert got["events_crv"] == exposure_sums(db, "")["events_crv"]

    windows = [50, 1000, 200_000]
    values = ",".join(map(str, windows))
    out = replay(
        "1",
        "--db",
        url,
        "--scan",
        f"builder.ac_window_ns={values}",
        "--tag",
        "w",
        "--json",
        work=work,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["tags"] == [f"w:builder.ac_window_ns={w}" for w in windows]
    assert [row["value"] for row in result["scan"]] == windows
    previous = -1
    for window, row in zip(windows, result["scan"], strict=True):
        expected = truth_ac_tags(data_dir, raw_file, window)
        got = exposure_sums(db, row["tag"])
        assert (got["events_ac"], got["rt_ac"]) == (expected["events_ac"], expected["rt_ac"])
        assert got["events_ac"] > previous
        previous = got["events_ac"]
        assert row["candidate_rate_hz"] > 0 and row["live_time_s"] > 0
        rt_veto = row["accidental_veto"]["ac"]["value"]
        assert rt_veto == pytest.approx(expected["rt_ac"] / summary["events"]["rt"])
    assert stored(db) == before  # the live results are untouched


def damaged_copy(raw_file: Path, work: Path, kind: str) -> Path:
    data = bytearray(raw_file.read_bytes())
    path = work / f"{kind}.pulses.arrow"
    if kind == "truncated":
        path.write_bytes(bytes(data[: int(len(data) * 0.6) + 5]))
    else:
        at = int(len(data) * 0.4)
        data[at : at + 64] = bytes(range(64))
        path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind", ["truncated", "corrupted"])
def test_damaged_files_replay_everything_intact_and_report(live, work, kind):
    _, summary, raw_file = live
    path = damaged_copy(raw_file, work, kind)
    reader = RawReader(path)
    recovered = list(reader.iter_batches())
    damage = reader.damage
    db = work / "damaged.sqlite"
    out = replay(str(path), "--db", f"sqlite:///{db}", "--json", work=work)
    assert out.returncode == 1, out.stderr
    assert "damaged raw file" in out.stderr and str(damage.offset) in out.stderr
    assert "Traceback" not in out.stderr
    result = json.loads(out.stdout)
    assert not result["intact"]
    assert [r["offset"] for r in result["damage"]] == [r.offset for r in damage.regions]
    for stream in Stream:  # every recovered pulse, before and after the damage, was replayed
        name = stream.name.lower()
        n = sum(len(b.pulses) for b in recovered if b.stream == stream)
        assert result["pulses"][name] == n
    assert sum(result["pulses"].values()) < sum(summary["pulses"].values()) + 10**6
    if kind == "corrupted":
        assert damage.regions[0].resumed_ns is not None  # resynchronised past the block
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT run_number, offset, bytes_skipped FROM raw_file_damage")
        ).all()
    engine.dispose()
    assert [(r[1], r[2]) for r in rows] == [(r.offset, r.bytes_skipped) for r in damage.regions]
    assert all(r[0] == summary["run"] for r in rows)


def test_a_file_that_is_not_a_raw_file_is_a_clear_error(work):
    path = work / "notes.txt"
    path.write_text("shift notes, not data\n")
    out = replay(str(path), "--db", f"sqlite:///{work / 'x.sqlite'}", work=work)
    assert out.returncode == 2
    assert "not a nudaq raw file" in out.stderr and "Traceback" not in out.stderr


def one_line_error(out: subprocess.CompletedProcess) -> str:
    """The one line a refused replay prints on stderr."""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("nudaq replay: error: ")
    return lines[0]


def test_a_flipped_bit_in_the_recorded_config_is_refused_in_one_line(live, work):
    _, _, raw_file = live
    data = bytearray(raw_file.read_bytes())
    needle = b'"ac_window_ns":1000,'
    assert data.count(needle) == 1
    data[data.index(needle) + len(b'"ac_window_ns":')] ^= ord("1") ^ ord("9")  # 1000 -> 9000
    path = work / "flipped.pulses.arrow"
    path.write_bytes(bytes(data))
    out = replay(str(path), "--db", f"sqlite:///{work / 'x.sqlite'}", "--json", work=work)
    assert out.returncode == 1 and out.stdout == ""
    line = one_line_error(out)
    assert str(path) in line and "damaged header" in line and "checksum" in line


def batch_tuples(path: Path) -> list[tuple]:
    """Everything a reader gives of a file: each batch's header and pulses, and its damage."""
    reader = RawReader(path)
    batches = [
        (b.kind, b.stream, b.run, b.seq, b.watermark_ns, b.dead_ns, b.pulses.tobytes())
        for b in reader.iter_batches()
    ]
    return [*batches, reader.damage]


def test_random_bit_flips_in_the_header_are_refused_or_replay_identically(live, work):
    data_dir, _, raw_file = live
    original = raw_file.read_bytes()
    reference = batch_tuples(raw_file)
    header_end = RawReader(raw_file)._data_start
    rng = np.random.default_rng(2024)
    flipped = work / "flip.pulses.arrow"
    refused: dict[str, bytes] = {}
    harmless: list[bytes] = []
    for at, bit in zip(rng.integers(0, header_end, 300), rng.integers(0, 8, 300), strict=True):
        data = bytearray(original)
        data[at] ^= 1 << bit
        flipped.write_bytes(bytes(data))
        try:
            got = batch_tuples(flipped)
        except RawFileError as err:  # RawHeaderError or another: a clear message, no crash
            message = str(err)
            assert str(flipped) in message and "\n" not in message, message
            refused.setdefault(type(err).__name__, bytes(data))
            continue
        assert got == reference, f"bit {bit} of byte {at}: read differently, not refused"
        harmless.append(bytes(data))
    assert "RawHeaderError" in refused and len(harmless) < 100
    for name, data in refused.items():  # through the command: one line, no traceback
        flipped.write_bytes(data)
        out = replay(str(flipped), "--db", f"sqlite:///{work / 'refused.sqlite'}", work=work)
        assert out.returncode == (1 if name == "RawHeaderError" else 2)
        one_line_error(out)
    original_results = stored(data_dir / "nudaq.sqlite")
    for i, data in enumerate(harmless[:2]):  # a flip that reads identically replays identically
        flipped.write_bytes(data)
        db = work / f"harmless{i}.sqlite"
        out = replay(str(flipped), "--db", f"sqlite:///{db}", "--json", work=work)
        assert out.returncode == 0, out.stderr
        assert stored(db) == original_results


def altered_copy(raw_file: Path, work: Path) -> Path:
    """The recording with one pulse's ADC value changed, rewritten by the raw writer: every
    checksum of the file holds (intact), but it is not the file the run recorded."""
    reader = RawReader(raw_file)
    batches = list(reader.iter_batches())
    target = next(b for b in batches if b.stream == Stream.HPGE and len(b.pulses))
    target.pulses["adc"][0] += 1
    prefix = work / "altered" / "run000001"
    with RawWriter(prefix, reader.run, reader.config_json) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return raw_path(prefix, "pulses")


def test_replay_verifies_the_digest_the_database_holds(live, work):
    data_dir, summary, raw_file = live
    db = data_dir / "nudaq.sqlite"
    url = f"sqlite:///{db}"
    out = replay(str(raw_file), "--db", url, "--tag", "proven", "--json", work=work)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["intact"] and result["sha256_verified"] is True
    assert result["events"] == summary["events"]

    altered = altered_copy(raw_file, work)
    assert RawReader(altered).damage is None
    out = replay(str(altered), "--db", url, "--tag", "altered", "--json", work=work)
    assert out.returncode == 1 and out.stdout == ""
    line = one_line_error(out)
    recorded = hashlib.sha256(raw_file.read_bytes()).hexdigest()
    assert str(altered) in line and "SHA-256" in line
    assert recorded in line and hashlib.sha256(altered.read_bytes()).hexdigest() in line
    assert all(not rows for rows in stored(db, "altered").values())  # nothing stored of it

    damaged = damaged_copy(raw_file, work, "corrupted")
    out = replay(str(damaged), "--db", url, "--tag", "damaged", "--json", work=work)
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout)
    assert not result["intact"] and result["sha256_verified"] is False
