"""The shifter token and the line that tells the shifter where it is: the environment
variable, the configuration key (also when ``nudaq up`` hands it over in the environment),
or the file it was generated into; never a variable name as if it were the token."""

from __future__ import annotations

import stat

import pytest

from daq.core.config import SHIFTER_TOKEN_ENV, SHIFTER_TOKEN_KEY_ENV, Config
from online.web.auth import TOKEN_FILE, shifter_token


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    monkeypatch.delenv(SHIFTER_TOKEN_ENV, raising=False)
    monkeypatch.delenv(SHIFTER_TOKEN_KEY_ENV, raising=False)


def test_token_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(SHIFTER_TOKEN_ENV, "from-env")
    config = Config()
    config.web.shifter_token = "from-config"
    assert shifter_token(config, tmp_path) == (
        "from-env",
        "from the environment variable NUDAQ_SHIFTER_TOKEN",
    )


def test_token_from_the_configuration(monkeypatch, tmp_path):
    config = Config()
    config.web.shifter_token = "from-config"
    expected = ("from-config", "from the configuration key web.shifter_token")
    assert shifter_token(config, tmp_path) == expected
    # nudaq up hands the configuration's token to its web server in the environment
    monkeypatch.setenv(SHIFTER_TOKEN_ENV, "from-config")
    monkeypatch.setenv(SHIFTER_TOKEN_KEY_ENV, "web.shifter_token")
    assert shifter_token(Config(), tmp_path) == expected


def test_token_generated_once_into_the_data_directory(tmp_path):
    token, source = shifter_token(Config(), tmp_path)
    path = tmp_path / TOKEN_FILE
    assert source == f"generated in {path}"
    assert path.read_text().strip() == token and len(token) >= 24
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert shifter_token(Config(), tmp_path) == (token, f"in {path}")
