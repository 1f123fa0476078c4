"""Configuration: the shipped example equals the defaults; wrong keys are named."""

import json
import subprocess
import sys
import tomllib

import pytest

from daq.core.config import EXAMPLE_CONFIG, Config, load_config, parse_config
from daq.core.errors import ConfigError


def test_example_is_the_defaults():
    assert load_config(EXAMPLE_CONFIG) == Config()


def _keys(data: dict, prefix: str = "") -> set[str]:
    """Dotted keys of every setting (lists of tables count as one setting)."""
    out = set()
    for key, value in data.items():
        name = f"{prefix}{key}"
        out |= _keys(value, f"{name}.") if isinstance(value, dict) else {name}
    return out


def test_example_spells_out_every_key():
    """The shipped example names every setting, so a user can read them all in one file."""
    example = tomllib.loads(EXAMPLE_CONFIG.read_text())
    assert _keys(example) == _keys(Config().model_dump(mode="json"))


@pytest.mark.parametrize(
    "text, key, why",
    [
        ("[builder]\nac_windw_ns = 3\n", "builder.ac_windw_ns", "unknown key"),
        ("[sim]\nspeed = -1\n", "sim.speed", "greater than 0"),
        (
            "[calibration]\ngain_keV_per_adc = [0.01, 0.02]\n",
            "calibration",
            "one entry per channel",
        ),
        ("[sim]\ntransport = 'usb'\n", "sim.transport", "'tcp' or 'pty'"),
        ("[nonsense]\nx = 1\n", "nonsense", "unknown key"),
    ],
)
def test_wrong_key_is_named(tmp_path, text, key, why):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"key '{key}" in str(err.value)
    assert why in str(err.value)
    assert str(path) in str(err.value)


BAD = [
    # (TOML text, the dotted key the error must name)
    # -- numbers are numbers: no bool or string coerced, ints stay ints, floats are finite
    ("[builder]\nac_window_ns = true\n", "builder.ac_window_ns"),
    ("[builder]\nac_window_ns = '2000'\n", "builder.ac_window_ns"),
    ("[builder]\nac_window_ns = 1000.5\n", "builder.ac_window_ns"),
    ("[sim]\nspeed = true\n", "sim.speed"),
    ("[sim]\nspeed = nan\n", "sim.speed"),
    ("[sim]\nspeed = inf\n", "sim.speed"),
    ("[sim]\nseed = 1.5\n", "sim.seed"),
    ("[sim]\nseed = -1\n", "sim.seed"),
    ("[sim]\ntruth = 'yes'\n", "sim.truth"),
    ("[sim]\ntruth = 1\n", "sim.truth"),
    ("[sim]\ntransport = 1\n", "sim.transport"),
    ("[spectrum]\nmax_keV = '1000'\n", "spectrum.max_keV"),
    (
        "[calibration]\ngain_keV_per_adc = [0.01, true]\noffset_keV = [0, 0]\n",
        "calibration.gain_keV_per_adc",
    ),
    ("[calibration]\ngain_keV_per_adc = ['0.01']\n", "calibration.gain_keV_per_adc"),
    ("[calibration]\ngain_keV_per_adc = [0.0]\n", "calibration.gain_keV_per_adc"),
    ("[calibration]\noffset_keV = [nan]\n", "calibration.offset_keV"),
    ("[analysis]\nwindow_keV = ['12', 60]\n", "analysis.window_keV"),
    ("[analysis]\nwindow_keV = [12, true]\n", "analysis.window_keV"),
    ("[analysis]\ninterval_s = '60'\n", "analysis.interval_s"),
    ("[frontends.hpge]\nurl = 5\n", "frontends.hpge.url"),
    ("[slowcontrol]\nurl = false\n", "slowcontrol.url"),
    ("[web]\nshifter_token = 1234\n", "web.shifter_token"),
    ("[web]\nport = true\n", "web.port"),
    ("[network]\nsend_hwm = '200'\n", "network.send_hwm"),
    ("[[sim.xray_lines]]\nenergy_keV = true\nrate_per_kg_day = 1.0\n", "sim.xray_lines.0"),
    # -- spectrum: 1 to MAX_BINS bins, positive width
    ("[spectrum]\nbin_width_keV = 5000\n", "spectrum.bin_width_keV"),
    ("[spectrum]\nbin_width_keV = 0.000001\n", "spectrum.bin_width_keV"),
    ("[spectrum]\nbin_width_keV = 1e-300\nmax_keV = 10000\n", "spectrum.bin_width_keV"),
    ("[spectrum]\nbin_width_keV = 0\n", "spectrum.bin_width_keV"),
    ("[spectrum]\nbin_width_keV = -0.2\n", "spectrum.bin_width_keV"),
    ("[spectrum]\nmax_keV = 0\n", "spectrum.max_keV"),
    ("[spectrum]\nmax_keV = 1e9\n", "spectrum.max_keV"),
    # -- analysis window: lo < hi inside [0, spectrum.max_keV], on bin edges
    ("[analysis]\nwindow_keV = [60.0, 12.0]\n", "analysis.window_keV"),
    ("[analysis]\nwindow_keV = [12.0, 12.0]\n", "analysis.window_keV"),
    ("[analysis]\nwindow_keV = [-2.0, 60.0]\n", "analysis.window_keV"),
    ("[analysis]\nwindow_keV = [12.0, 2000.0]\n", "analysis.window_keV"),
    ("[analysis]\nwindow_keV = [12.0, 60.0, 80.0]\n", "analysis.window_keV"),
    ("[analysis]\nwindow_keV = [12.1, 60.0]\n", "analysis.window_keV"),
    ("[spectrum]\nmax_keV = 50.0\n", "spectrum.max_keV"),  # below the window's 60 keV
    ("[spectrum]\nbin_width_keV = 0.7\n", "spectrum.bin_width_keV"),  # 12 keV is no edge
    # -- detector
    ("[detector]\nthreshold_keV = 2000.0\n", "detector.threshold_keV"),
    ("[detector]\nthreshold_keV = 1000.0\n", "detector.threshold_keV"),
    ("[detector]\nthreshold_keV = -1.0\n", "detector.threshold_keV"),
    ("[detector]\nmass_kg = 0\n", "detector.mass_kg"),
    ("[detector]\nmass_kg = 1e6\n", "detector.mass_kg"),
    # -- builder windows and thresholds
    ("[builder]\nac_window_ns = 100000000000\n", "builder.ac_window_ns"),  # 100 s
    ("[builder]\ncrv_pre_ns = -1\n", "builder.crv_pre_ns"),
    ("[builder]\ncrv_post_ns = 1000001\n", "builder.crv_post_ns"),
    ("[builder]\nac_threshold_adc = -5\n", "builder.ac_threshold_adc"),
    ("[builder]\ncrv_threshold_adc = 4294967296\n", "builder.crv_threshold_adc"),
    ("[builder]\ncommit_interval_s = 0\n", "builder.commit_interval_s"),
    ("[builder]\nraw_fsync_interval_s = -1.0\n", "builder.raw_fsync_interval_s"),
    ("[builder]\nmax_batch_pulses = 1000\n", "builder.max_batch_pulses"),  # below a readout's
    ("[builder]\nmax_batch_pulses = 300000.5\n", "builder.max_batch_pulses"),  # a fraction
    ("[builder]\nmax_lead_s = 10.0\n", "builder.max_lead_s"),
    ("[builder]\ndrain_timeout_s = 0\n", "builder.drain_timeout_s"),
    # -- sim: min <= max, rates, resolution, gain, continuum, reactor schedule
    ("[sim]\ncrv_lag_min_ns = 100.0\n", "sim.crv_lag_min_ns"),
    ("[sim]\ncrv_lag_min_ns = 90.0\ncrv_lag_max_ns = 10.0\n", "sim.crv_lag_max_ns"),
    ("[sim]\ncrv_lag_max_ns = 1e12\n", "sim.crv_lag_max_ns"),
    ("[sim]\nac_delay_sigma_ns = 1e12\n", "sim.ac_delay_sigma_ns"),
    ("[sim]\nacv_singles_hz = -1.0\n", "sim.acv_singles_hz"),
    ("[sim]\ncrv_singles_hz = 1e9\n", "sim.crv_singles_hz"),
    ("[sim]\nrt_rate_hz = 1e7\n", "sim.rt_rate_hz"),
    ("[sim]\nflat_cpd = -1.0\n", "sim.flat_cpd"),
    ("[sim]\nflat_cpd = 1e8\n", "sim.flat_cpd"),
    ("[detector]\nmass_kg = 1000\n[sim]\nflat_cpd = 1e5\n", "detector.mass_kg"),
    ("[sim]\ncompton_factor = 1e6\n", "sim.compton_factor"),
    ("[sim]\nresolution_a_keV = 0.0\nresolution_b_keV = 0.0\n", "sim.resolution_b_keV"),
    ("[sim]\nresolution_a_keV = -0.6\n", "sim.resolution_a_keV"),
    ("[sim]\ngain_keV_per_adc = 0.0\n", "sim.gain_keV_per_adc"),
    ("[sim]\ncontinuum_max_keV = 3.0\n", "sim.continuum_max_keV"),
    ("[sim]\ncontinuum_max_keV = 1e9\n", "sim.continuum_max_keV"),
    ("[sim]\nspeed = 0\n", "sim.speed"),
    ("[sim]\nspeed = 1e9\n", "sim.speed"),
    ("[sim]\nadc_dead_time_ns = -1\n", "sim.adc_dead_time_ns"),
    ("[sim]\nmu_nu_1e10 = 1e9\n", "sim.mu_nu_1e10"),
    ("[sim]\ndistance_m = 0.0\n", "sim.distance_m"),
    ("[sim]\nhv_V = -5.0\n", "sim.hv_V"),
    ("[[sim.reactor]]\nstart_s = 0\npower_MW = -1.0\n", "sim.reactor.0.power_MW"),
    ("[[sim.reactor]]\nstart_s = -1\npower_MW = 0\n", "sim.reactor.0.start_s"),
    (
        "[[sim.reactor]]\nstart_s = 0\npower_MW = 0\n[[sim.reactor]]\nstart_s = 0\n"
        "power_MW = 2900\n",
        "sim.reactor.1.start_s",
    ),
    (
        "[[sim.xray_lines]]\nenergy_keV = 0.0\nrate_per_kg_day = 1.0\n",
        "sim.xray_lines.0.energy_keV",
    ),
    ("[sim.faults.acv]\nstall_every_s = 1.0\nstall_s = 2.0\n", "sim.faults.acv.stall_s"),
    ("[sim.faults.hpge]\nend_frame_loss = 1.5\n", "sim.faults.hpge.end_frame_loss"),
    ("[sim.faults.crv]\nnoise_bytes_per_s = -1\n", "sim.faults.crv.noise_bytes_per_s"),
    # -- network: ZeroMQ endpoints, all different; send_hwm positive
    ("[network]\nbuilder_data = 'garbage://x'\n", "network.builder_data"),
    ("[network]\nmonitor = 'tcp://127.0.0.1:70000'\n", "network.monitor"),
    ("[network]\nmonitor = 'tcp://127.0.0.1:0'\n", "network.monitor"),
    ("[network]\nrun_control = 'tcp://127.0.0.1'\n", "network.run_control"),
    ("[network]\nrun_control = 'tcp://[nonsense]:5555'\n", "network.run_control"),
    ("[network]\ntransitions = 'ipc://'\n", "network.transitions"),
    ("[network]\ntransitions = 'inproc://t'\n", "network.transitions"),  # stays in its process
    ("[network]\nmonitor = 'tcp://*:5556'\n", "network.monitor"),  # cannot be connected to
    ("[network]\nrun_control = 'tcp://127.0.0.1:*'\n", "network.run_control"),
    ("[network]\ntransitions = 'ipc://{datadir}/transitions'\n", "network.transitions"),
    ("[network]\ntransitions = 'ipc:///tmp/" + "x" * 120 + "'\n", "network.transitions"),
    ("[network]\nmonitor = '/tmp/monitor'\n", "network.monitor"),
    ("[network]\nmonitor = 5555\n", "network.monitor"),
    ("[network]\nmonitor = 'ipc://{data_dir}/sockets/builder-data'\n", "network.monitor"),
    ("[network]\nsend_hwm = 0\n", "network.send_hwm"),
    ("[network]\nsend_hwm = 10000000000\n", "network.send_hwm"),
    # -- front-ends, slow control, alarms, web
    ("[frontends.hpge]\nrt_rate_hz = 1e7\n", "frontends.hpge.rt_rate_hz"),
    ("[frontends.acv]\nthreshold_adc = 4294967296\n", "frontends.acv.threshold_adc"),
    ("[frontends.crv]\nbaudrate = 0\n", "frontends.crv.baudrate"),
    ("[frontends.crv]\nframe_ms = 0\n", "frontends.crv.frame_ms"),
    ("[frontends.crv]\ntimeout_s = 0.0\n", "frontends.crv.timeout_s"),
    ("[frontends.hpge]\nframe_ms = 500\ntimeout_s = 0.5\n", "frontends.hpge.frame_ms"),
    ("[frontends.hpge]\nbuffer_pulses = 10\n", "frontends.hpge.buffer_pulses"),
    ("[frontends.hpge]\nheartbeat_ms = 1e9\n", "frontends.hpge.heartbeat_ms"),
    ("[slowcontrol]\npoll_interval_s = 0\n", "slowcontrol.poll_interval_s"),
    ("[reactor]\non_threshold_MW = -1\n", "reactor.on_threshold_MW"),
    ("[alarms]\nrate_p_value = 1.0\n", "alarms.rate_p_value"),
    ("[alarms]\nln2_low_pct = 150.0\n", "alarms.ln2_low_pct"),
    ("[alarms]\nsilent_stream_s = 0\n", "alarms.silent_stream_s"),
    ("[analysis]\ninterval_s = -60.0\n", "analysis.interval_s"),
    ("[web]\nport = 70000\n", "web.port"),
    ("[web]\nport = -1\n", "web.port"),
    ("[web]\nhost = 'not a host'\n", "web.host"),
    ("[web]\nhost = 'http://localhost'\n", "web.host"),
]


@pytest.mark.parametrize("text, key", BAD)
def test_bad_value_is_refused_naming_its_key(tmp_path, text, key):
    """Every value that would break a process (or be silently coerced) is a ConfigError
    whose message names the dotted key, also for checks across keys and sections."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert key in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "data, key",
    [
        ({"builder": {"ac_window_ns": True}}, "builder.ac_window_ns"),
        ({"builder": {"ac_window_ns": "2000"}}, "builder.ac_window_ns"),
        ({"sim": {"seed": None}}, "sim.seed"),
        ({"sim": {"speed": float("nan")}}, "sim.speed"),
        ({"sim": {"speed": 10**400}}, "sim.speed"),
        ({"analysis": {"window_keV": [60, 12]}}, "analysis.window_keV"),
        ({"calibration": {"gain_keV_per_adc": 0.01}}, "calibration.gain_keV_per_adc"),
        ({"web": {"port": 80.5}}, "web.port"),
    ],
)
def test_bad_snapshot_value_is_named(tmp_path, data, key):
    """JSON snapshots (and override dictionaries) get the same checks."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    for load in (lambda: load_config(path), lambda: parse_config(data)):
        with pytest.raises(ConfigError) as err:
            load()
        assert key in str(err.value)


def test_model_validator_error_names_the_full_key():
    """A check across keys names them all with their full dotted path, not the section."""
    with pytest.raises(ConfigError) as err:
        parse_config({"sim": {"crv_lag_min_ns": 100.0}}, "x.toml")
    assert str(err.value) == (
        "x.toml: key 'sim.crv_lag_min_ns': must be at most sim.crv_lag_max_ns (80)"
    )
    with pytest.raises(ConfigError) as err:
        parse_config({"frontends": {"acv": {"frame_ms": 500, "timeout_s": 0.5}}})
    assert "key 'frontends.acv.timeout_s'" in str(err.value)
    assert "frontends.acv.frame_ms" in str(err.value)


@pytest.mark.parametrize(
    "data, check",
    [
        ({"builder": {"ac_window_ns": 1000.0}}, lambda c: c.builder.ac_window_ns == 1000),
        ({"sim": {"speed": 5}}, lambda c: c.sim.speed == 5.0),
        ({"analysis": {"window_keV": [12, 60]}}, lambda c: c.analysis.window_keV == (12.0, 60.0)),
        ({"calibration": {"gain_keV_per_adc": [1, 0.5], "offset_keV": [0, 1]}}, lambda c: True),
        ({"spectrum": {"bin_width_keV": 1000.0}, "analysis": {"window_keV": [0, 1000]}}, None),
        ({"spectrum": {"bin_width_keV": 0.01}}, lambda c: c.spectrum.n_bins == 100_000),
        ({"network": {"monitor": "tcp://[::1]:5556", "run_control": "tcp://0.0.0.0:5557"}}, None),
        ({"network": {"monitor": "ipc:///tmp/nudaq-monitor"}}, None),
        ({"web": {"host": "::", "port": 0}}, None),
        ({"web": {"host": "daq-01.example.org"}}, None),
        ({"web": {"host": ""}}, None),  # every interface
        ({"sim": {"crv_lag_min_ns": 50, "crv_lag_max_ns": 50}}, None),
        ({"sim": {"reactor": []}}, None),
        (
            {"sim": {"reactor": [{"start_s": 9, "power_MW": 0}, {"start_s": 0, "power_MW": 1}]}},
            None,
        ),
        ({"sim": {"resolution_a_keV": 0.0}}, None),
        ({"sim": {"faults": {"hpge": {"stall_every_s": 10, "stall_s": 2}}}}, None),
        ({"sim": {"faults": {"hpge": {"stall_s": 2}}}}, None),
    ],
)
def test_valid_values_are_kept(data, check):
    """What the rules allow: integral floats for ints, ints for floats, edge values."""
    config = parse_config(data)
    assert check is None or check(config)


def test_ints_stay_ints():
    config = parse_config({"builder": {"ac_window_ns": 1500.0}, "sim": {"seed": 7}})
    assert type(config.builder.ac_window_ns) is int and type(config.sim.seed) is int
    assert type(parse_config({"sim": {"speed": 5}}).sim.speed) is float


def test_assignment_is_checked_and_keeps_the_old_value():
    """``config.sim.speed = x`` (command-line overrides) is checked like a file: a
    ConfigError naming the key, and the section keeps its valid value."""
    config = Config()
    with pytest.raises(ConfigError, match="key 'speed'"):
        config.sim.speed = 1e9
    with pytest.raises(ConfigError, match="key 'crv_lag_min_ns'.*crv_lag_max_ns"):
        config.sim.crv_lag_min_ns = 500.0
    with pytest.raises(ConfigError, match="key 'ac_window_ns'"):
        config.builder.ac_window_ns = True
    assert config == Config()
    config.sim.speed = 5
    assert config.sim.speed == 5.0


def test_not_toml_and_missing_file(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text("[builder\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "text, key",
    [
        ("[builder]\nac_window_ns = true\n", "builder.ac_window_ns"),
        ("[spectrum]\nbin_width_keV = 5000\n", "spectrum.bin_width_keV"),
        ("[network]\nbuilder_data = 'garbage://x'\n", "network.builder_data"),
        ("[sim]\ncrv_lag_min_ns = 100.0\n", "sim.crv_lag_min_ns"),
        ("[analysis]\nwindow_keV = [60.0, 12.0]\n", "analysis.window_keV"),
    ],
)
def test_cli_config_check_names_the_key(tmp_path, text, key):
    """``nudaq config check``: exit 2 and one clear line naming the key, no traceback."""
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "daq.cli", "config", "check", str(bad)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"key '{key}'" in lines[0] and str(bad) in lines[0]
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_cli_config_check(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[builder]\ncrv_pre_ns = 'long'\n")
    out = subprocess.run(
        [sys.executable, "-m", "daq.cli", "config", "check", str(bad)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "builder.crv_pre_ns" in out.stderr and "Traceback" not in out.stderr
    good = subprocess.run(
        [sys.executable, "-m", "daq.cli", "config", "check", str(EXAMPLE_CONFIG)],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0 and "valid" in good.stdout


def test_snapshot_digest_changes_with_content():
    a, b = Config(), Config()
    b.builder.ac_window_ns = 2000
    assert a.digest() == Config().digest() != b.digest()


def test_snapshot_leaves_the_shifter_token_out():
    """Runs and raw files carry the snapshot and are shared; the shifter's secret is not."""
    config = Config()
    config.web.shifter_token = "s3cret-shifter-token"
    assert "s3cret-shifter-token" not in config.snapshot()
    assert config.digest() == Config().digest()
    assert Config.model_validate_json(config.snapshot()).web.shifter_token == ""
