"""Property: a configuration that ``nudaq config check`` accepts runs the system cleanly.

Hypothesis mutates a few keys of the default configuration, with values of every kind (bools,
strings, negative, zero, huge and ordinary numbers, reversed pairs) or, in half of the
examples, with ordinary values inside each key's range. Every configuration then either
fails ``load_config`` with a ConfigError naming one of the mutated keys, or runs 5 simulated
seconds of ``nudaq up --sim`` cleanly: exit 0, a JSON run summary, no traceback.

Each run of the system takes 10-20 s, so there are few examples, no deadline and no
shrinking (a failing example is reported as drawn); only accepted configurations are run.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from daq.core.config import Config, load_config
from daq.core.errors import ConfigError
from tests.processes import NUDAQ

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- what is mutated ------------------------------------------------------------------------

STRINGS = st.one_of(st.sampled_from(["1000", "5.0", "true", "", "-1"]), st.text(max_size=6))
NEGATIVE = st.one_of(st.integers(-(10**6), -1), st.floats(-1e6, -1e-3))
HUGE = st.sampled_from([10**12, 10**18, 10**30, 1e12, 1e100, 1e300])
ODD = st.sampled_from([0.5, 12.5, 1e-9])  # fractions (wrong for an integer key)


def wild(ordinary: st.SearchStrategy) -> st.SearchStrategy:
    """A value of any kind for a numeric key: its ordinary values among the rest."""
    return st.one_of(
        st.booleans(), STRINGS, NEGATIVE, st.just(0), st.just(0.0), HUGE, ODD, ordinary
    )


def floats(lo: float, hi: float) -> st.SearchStrategy:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


SCALARS: dict[str, st.SearchStrategy] = {  # each key with its ordinary values
    "builder.ac_window_ns": st.integers(0, 20_000),
    "builder.crv_pre_ns": st.integers(0, 20_000),
    "builder.crv_post_ns": st.integers(0, 20_000),
    "builder.ac_threshold_adc": st.integers(0, 2000),
    "builder.crv_threshold_adc": st.integers(0, 2000),
    "builder.commit_interval_s": floats(0.5, 5.0),
    "builder.raw_fsync_interval_s": floats(0.0, 5.0),
    "builder.max_batch_pulses": st.integers(262_144, 1 << 22),
    "builder.drain_timeout_s": floats(1.0, 20.0),
    "spectrum.bin_width_keV": st.sampled_from([0.1, 0.2, 0.25, 0.5, 1.0, 2.0]),
    "spectrum.max_keV": st.sampled_from([100.0, 200, 500.0, 1000, 2000.0]),
    "detector.threshold_keV": floats(0.0, 20.0),
    "detector.mass_kg": floats(0.5, 5.0),
    "sim.acv_singles_hz": floats(0.0, 2000.0),
    "sim.crv_singles_hz": floats(0.0, 1000.0),
    "sim.rt_rate_hz": floats(0.0, 10.0),
    "sim.flat_cpd": floats(0.0, 10.0),
    "sim.resolution_a_keV": floats(0.1, 2.0),
    "sim.gain_keV_per_adc": floats(0.005, 0.05),
    "sim.continuum_max_keV": floats(100.0, 1000.0),
    "sim.seed": st.integers(0, 10**6),
    "sim.adc_dead_time_ns": st.integers(0, 50_000),
    "sim.ac_delay_sigma_ns": floats(0.0, 200.0),
    "frontends.hpge.threshold_adc": st.integers(0, 500),
    "frontends.hpge.frame_ms": st.integers(5, 50),
    "frontends.acv.batch_ms": st.integers(10, 100),
    "frontends.crv.heartbeat_ms": st.integers(50, 500),
    "network.send_hwm": st.integers(50, 1000),
}


def _pair(lo: float, hi: float) -> st.SearchStrategy:
    return st.tuples(floats(lo, hi), floats(lo, hi)).map(sorted)


PAIRS: dict[tuple[str, ...], tuple[st.SearchStrategy, st.SearchStrategy]] = {
    # keys mutated together: (ordinary, wild) strategies of the tuple of their values
    ("analysis.window_keV",): (
        st.sampled_from([[10.0, 50.0], [12, 60], [20.0, 30.0]]).map(lambda w: (w,)),
        st.one_of(
            st.sampled_from([[60.0, 12.0], [12.0, 12.0], [12.0, 1e6], [-2.0, 60.0], "12-60"]),
            st.lists(wild(st.just(12.0)), min_size=2, max_size=2),
        ).map(lambda w: (w,)),
    ),
    ("sim.crv_lag_min_ns", "sim.crv_lag_max_ns"): (
        _pair(0.0, 500.0),
        st.one_of(
            _pair(1.0, 500.0).map(lambda p: (p[1] + 1, p[0])),  # reversed
            st.tuples(HUGE, NEGATIVE),
            st.tuples(wild(st.just(20.0)), wild(st.just(80.0))),
        ),
    ),
    ("network.builder_data",): (
        st.just(("ipc://{data_dir}/sockets/data-in",)),
        st.sampled_from(
            [
                "garbage://x",
                "tcp://127.0.0.1:70000",
                "ipc://",
                "",
                "ipc://{data_dir}/sockets/monitor",  # the monitor's endpoint
                5555,
                True,
            ]
        ).map(lambda e: (e,)),
    ),
    ("calibration.gain_keV_per_adc",): (
        floats(0.005, 0.05).map(lambda g: ([g],)),
        st.sampled_from([[True], ["0.01"], [0.0], [], [-0.01], 0.01]).map(lambda g: (g,)),
    ),
    ("web.port",): (  # ordinary: a free port, as every run gets anyway
        st.builds(free_port).map(lambda p: (p,)),
        st.sampled_from([True, "8080", -1, 70000, 8080.5]).map(lambda p: (p,)),
    ),
}

MUTABLE = [(key,) for key in SCALARS] + list(PAIRS)


@st.composite
def mutations(draw) -> tuple[bool, dict[str, object]]:
    """(all values ordinary?, {dotted key: value}) for one to three mutated keys (or pairs)."""
    ordinary = draw(st.booleans())
    chosen = draw(st.lists(st.sampled_from(MUTABLE), min_size=1, max_size=3, unique=True))
    out: dict[str, object] = {}
    for keys in chosen:
        if keys in PAIRS:
            good, bad = PAIRS[keys]
            values = draw(good if ordinary else bad)
        else:
            (key,) = keys
            values = (draw(SCALARS[key] if ordinary else wild(SCALARS[key])),)
        out.update(zip(keys, values, strict=True))
    return ordinary, out


def _set(data: dict, key: str, value: object) -> None:
    *path, leaf = key.split(".")
    for part in path:
        data = data[part]
    data[leaf] = value


def _run_up(config_file: Path, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            *NUDAQ,
            "up",
            "--sim",
            "--config",
            str(config_file),
            "--duration",
            "5",
            "--speed",
            "5",
            "--json",
            "--data-dir",
            str(data_dir),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


@settings(
    max_examples=7,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mutations())
def test_accepted_configuration_runs_cleanly(mutation):
    ordinary, changes = mutation
    data = Config().model_dump(mode="json")
    data["web"]["port"] = free_port()
    for key, value in changes.items():
        _set(data, key, value)
    tmp = Path(tempfile.mkdtemp(prefix="nqp", dir="/tmp"))  # ipc paths stay short
    try:
        config_file = tmp / "config.json"
        config_file.write_text(json.dumps(data))
        try:
            load_config(config_file)
        except ConfigError as err:
            assert not ordinary, f"ordinary values refused: {changes}: {err}"
            assert any(key in str(err) for key in changes), (changes, str(err))
            event("refused by the check")
            return
        event("accepted: the system ran")
        out = _run_up(config_file, tmp / "data")
        context = f"{changes}\n{out.stderr[-4000:]}"
        assert out.returncode == 0, context
        assert "Traceback" not in out.stderr, context
        summary = json.loads(out.stdout)
        assert summary["run"] == 1, context
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
