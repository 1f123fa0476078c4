"""Browser-test fixtures: Debian's chromium through Playwright, and a live simulated system.

``lone_web`` is ``nudaq web`` alone on a data directory whose database holds an old reactor
power reading, an open alarm and a run: no DAQ, no monitor, so the pages must say that there
is no live data and that the alarm state is unknown; ``dead_database_web`` is ``nudaq web`` on
a PostgreSQL URL where nothing listens.

The system is a real ``nudaq up --sim`` (every process, real sockets) with a configuration
that fills spectra fast enough to see in seconds: a high continuum below 200 keV, strong
X-ray lines, many random triggers, the reactor ON, then OFF from 15 s to 30 s of simulated
time, then ON again; the live analysis every 5 s; and a disk-space threshold no disk meets,
so the monitor raises an alarm for the shifter to acknowledge.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest

from daq.core.config import (
    SHIFTER_TOKEN_ENV,
    SHIFTER_TOKEN_KEY_ENV,
    Config,
    ReactorPeriod,
    XrayLine,
)
from daq.core.paths import db_url
from daq.store.models import Alarm, SlowControlReading
from daq.store.runs import create_run, end_run
from daq.store.session import make_engine, session_scope, upgrade_database
from tests.processes import NUDAQ, start_up, stop_up

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser"
TOKEN = "night-shift-token"
TOKEN_VARIABLES = (SHIFTER_TOKEN_ENV, SHIFTER_TOKEN_KEY_ENV)
STARTUP_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def browser():
    """Headless chromium, or a skip saying why it cannot run here."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as err:
            pytest.skip(f"chromium at {CHROMIUM} does not start: {err.message.splitlines()[0]}")
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies) and page; JavaScript errors fail the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda err: errors.append(str(err)))
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="session")
def screenshot():
    """save(page, name): a full-page screenshot under test-output/browser/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


@pytest.fixture(scope="session")
def shifter_token() -> str:
    """The shifter token the live system accepts."""
    return TOKEN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_config(port: int) -> Config:
    """The configuration of the live system in the browser tests (see the module doc)."""
    config = Config()
    config.web.port = port
    config.sim.flat_cpd = 3000.0
    config.sim.continuum_max_keV = 200.0
    config.sim.xray_lines = [
        XrayLine(energy_keV=10.37, rate_per_kg_day=3e5),
        XrayLine(energy_keV=9.66, rate_per_kg_day=1e5),
        XrayLine(energy_keV=8.98, rate_per_kg_day=8e4),
        XrayLine(energy_keV=1.30, rate_per_kg_day=6e4),
    ]
    config.sim.reactor = [
        ReactorPeriod(start_s=0, power_MW=2900.0),
        ReactorPeriod(start_s=15, power_MW=0.0),
        ReactorPeriod(start_s=30, power_MW=2900.0),
    ]
    config.sim.rt_rate_hz = 5.0
    config.frontends.hpge.rt_rate_hz = 5.0
    config.analysis.interval_s = 5.0
    config.alarms.disk_low_GB = 1e9
    return config


@dataclass
class LiveSystem:
    """A running ``nudaq up --sim`` and how to reach its web server."""

    url: str
    config: Config
    data_dir: Path
    process: subprocess.Popen
    stderr: list[str] = field(default_factory=list)

    def api(self, path: str, **params) -> dict | list:
        reply = httpx2.get(self.url.rstrip("/") + path, params=params, timeout=10)
        reply.raise_for_status()
        return reply.json()

    def wait(self, what: str, condition, timeout_s: float) -> None:
        """Poll condition() until true; fail naming ``what`` after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            assert self.process.poll() is None, "nudaq up exited:\n" + "".join(self.stderr)
            time.sleep(0.2)
        raise AssertionError(f"{what} within {timeout_s:.0f} s\n" + "".join(self.stderr[-20:]))


@pytest.fixture(scope="module")
def live_system():
    """``nudaq up --sim`` with the browser configuration (the shifter token in it), its run
    going, the URL known."""
    data_dir = Path(tempfile.mkdtemp(prefix="nqb", dir="/tmp"))
    (data_dir / "sockets").mkdir()
    config = browser_config(free_port())
    document = json.loads(config.snapshot())
    document["web"]["shifter_token"] = TOKEN  # the snapshot leaves it out
    config_file = data_dir / "browser-config.json"
    config_file.write_text(json.dumps(document))
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARIABLES}
    process = start_up(
        data_dir,
        *("--config", str(config_file), "--comment", "browser test"),
        stdout=subprocess.DEVNULL,
        env=env,
    )
    system = LiveSystem("", config, data_dir, process)

    def drain():
        for line in process.stderr:
            system.stderr.append(line)

    threading.Thread(target=drain, daemon=True).start()
    try:
        system.wait(
            "nudaq up printed the web URL",
            lambda: any("web monitoring and control at" in line for line in system.stderr),
            STARTUP_TIMEOUT_S,
        )
        line = next(x for x in system.stderr if "web monitoring and control at" in x)
        system.url = line.rsplit(" ", 1)[-1].strip()
        system.wait(
            "the first run is going",
            lambda: system.api("/api/status")["state"] == "running",
            STARTUP_TIMEOUT_S,
        )
        yield system
    finally:
        stop_up(process)
        shutil.rmtree(data_dir, ignore_errors=True)


POWER_AGE = timedelta(hours=2)
"""How old the reactor power reading in ``lone_web``'s database is."""


@dataclass
class LoneWeb:
    """A ``nudaq web`` process alone, its URL, shifter token and what its database holds."""

    url: str
    data_dir: Path
    token: str
    line: str
    power_utc: datetime


def start_web(data_dir: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """``nudaq web`` on a free port; the process and the line naming its URL and token."""
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARIABLES}
    process = subprocess.Popen(
        [*NUDAQ, "web", "--data-dir", str(data_dir), "--port", "0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = ""
    while "nudaq web:" not in line:
        line = process.stderr.readline()
        if not line:
            process.wait(10)
            raise AssertionError("nudaq web exited before serving")
    threading.Thread(target=process.stderr.read, daemon=True).start()
    return process, line


def stop_web(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def lone_web():
    data_dir = Path(tempfile.mkdtemp(prefix="nqw", dir="/tmp"))
    power_utc = (datetime.now(UTC) - POWER_AGE).replace(microsecond=0)
    engine = make_engine(db_url(None, data_dir))
    upgrade_database(engine)
    with session_scope(engine) as session:
        session.add(
            SlowControlReading(
                time_utc=power_utc, clock_ns=0, quantity="power_MW", value=2900.0, unit="MW"
            )
        )
        session.add(Alarm(name="ln2_low", severity="warning", message="LN2 level 15 % < 20 %"))
        create_run(session, 1, Config(), comment="an old run")
        end_run(session, 1)
    engine.dispose()
    process, line = start_web(data_dir)
    try:
        token = (data_dir / "shifter-token").read_text().strip()
        yield LoneWeb(line.split()[2], data_dir, token, line, power_utc)
    finally:
        stop_web(process)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def dead_database_web():
    """The URL of ``nudaq web`` on a PostgreSQL URL where nothing listens."""
    data_dir = Path(tempfile.mkdtemp(prefix="nqw", dir="/tmp"))
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    process, line = start_web(data_dir, "--db", url)
    try:
        yield line.split()[2]
    finally:
        stop_web(process)
        shutil.rmtree(data_dir, ignore_errors=True)
