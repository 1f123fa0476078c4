"""Configuration: the shipped example equals the defaults; wrong keys are named."""

import subprocess
import sys
import tomllib

import pytest

from daq.core.config import EXAMPLE_CONFIG, Config, load_config
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


def test_not_toml_and_missing_file(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text("[builder\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "missing.toml")


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
