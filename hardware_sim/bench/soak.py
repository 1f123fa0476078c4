"""The soak: does any process of a running system grow in memory as data taking goes on?

``nudaq up --sim`` runs for minutes at a raised clock speed (every rate scaled with it) with
its normal data taking: one run the whole time, the monitor evaluating the alarms every
second and recording the live analysis every ``analysis.interval_s``, and a viewer as an open
browser page would be (the /api/events stream held open, the alarms polled every 5 s, the
spectra, residual, analysis and history every minute). Every SAMPLE_S the resident memory
(RSS, MB = 2^20 bytes) of every process is read: the simulated crate, builder, slow control,
readouts, web, monitor (their pids from run control's status, so a restarted process is
followed) and ``nudaq up`` itself. The clock starts when the run is seen going; the first
WARMUP_S (at most a quarter of the soak) are the warm-up, left out of every fit: imports,
numba's cache, buffers and the database's page cache filling, the first live analysis.

Each process's figure is the least-squares slope of RSS against wall time over the samples
after the warm-up (MB/h), with its standard error. RSS moves in steps (allocator arenas,
pages), so the residuals of a fit are correlated from one sample to the next; the standard
error counts the effective number of independent samples n (1 - r1) / (1 + r1), with r1 the
residuals' lag-1 autocorrelation (Santer et al., J. Geophys. Res. 105 (2000) 7337), at least
3: a step weighs as the few independent samples it is, not as the hundreds it spans.

The baseline beside it is the same fit over the first and over the second half of the
samples after the warm-up. A flat process is flat in both halves; one that only settles
(a cache filling up to its size) grows in the first half and not in the second; one that
leaks grows in both, at the same rate. The slope over the whole soak cannot tell the last
two apart, and the RSS at warm-up (given too) only sets the scale. The verdict: "growing"
when the second half's slope is more than SIGNIFICANT standard errors above zero,
"settling" when only the first half's is, else "flat". Three, because a single step of RSS
in the middle of a half of 100 samples or more, the worst case for a step, comes out at
about 2.8 standard errors; in a soak so short that a half has fewer samples, one step can
pass for growth, and only a longer soak tells. A rise that bends inside a half (growth
slowing down) leaves residuals that a line does not fit, correlated, so its error is wide:
the verdict calls growth only what rises steadily through the half.

The soak also reports what the system did meanwhile: the run's pulses and losses, the live
analyses recorded, the alarms raised, the viewer's requests and each process's restarts.
Its data directory (under /tmp) is removed afterwards, but kept, and named, when the soak
fails.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text

from daq.control.runcontrol import request
from daq.core.config import Config
from daq.core.errors import NudaqError
from daq.core.paths import db_url

WARMUP_S = 120.0
"""Wall seconds after the run starts left out of the fits (at most a quarter of the soak)."""
SAMPLE_S = 2.0
"""Wall seconds between two readings of every process's RSS."""
STARTUP_S = 180.0
"""Wall seconds that ``nudaq up`` has to start the system and its run."""
STOP_S = 120.0
"""Wall seconds that ``nudaq up`` has to end the run and stop after SIGTERM."""
SIGNIFICANT = 3.0
"""A slope counts as growth when it is more than this many standard errors above zero."""
VIEWS = (
    ("/api/alarms", 5.0),
    ("/api/spectra?reactor=on&rebin=1", 60.0),
    ("/api/spectra?reactor=off&rebin=1", 60.0),
    ("/api/residual", 60.0),
    ("/api/analysis", 60.0),
    ("/api/runs", 60.0),
    ("/api/history?hours=6", 60.0),
)
"""What the viewer asks the web server for, and every how many wall seconds (the pages'
own polling); /api/events stays open besides."""
WEB_URL = re.compile(r"web monitoring and control at (\S+)")
"""How ``nudaq up`` names its web server on stderr."""
MB = 2**20


@dataclass(frozen=True)
class Slope:
    """A least-squares slope of RSS against time: MB/h, its standard error (MB/h), the
    number of samples and their effective number (module doc)."""

    mb_per_h: float
    se_mb_per_h: float
    samples: int
    effective_samples: float


def fit_slope(t_s: np.ndarray, rss_mb: np.ndarray) -> Slope:
    """Least-squares slope of ``rss_mb`` (MB) against ``t_s`` (wall s), in MB/h, with its
    standard error for residuals correlated from sample to sample (module doc)."""
    t = np.asarray(t_s, dtype=float) / 3600.0
    y = np.asarray(rss_mb, dtype=float)
    n = len(t)
    if n < 3:
        raise ValueError(f"a slope needs at least 3 samples, got {n}")
    dt = t - t.mean()
    sxx = float(dt @ dt)
    if sxx == 0:
        raise ValueError("a slope needs samples at more than one time")
    slope = float(dt @ (y - y.mean())) / sxx
    res = y - y.mean() - slope * dt
    ss = float(res @ res)
    r1 = float(res[:-1] @ res[1:]) / ss if ss > 0 else 0.0
    n_eff = min(float(n), max(3.0, n * (1 - r1) / (1 + r1)))
    return Slope(slope, float(np.sqrt(ss / (n_eff - 2) / sxx)), n, n_eff)


def _grows(slope: Slope) -> bool:
    return slope.mb_per_h > SIGNIFICANT * slope.se_mb_per_h


def memory_trend(t_s: np.ndarray, rss_mb: np.ndarray, warmup_s: float) -> dict:
    """One process's figures from its samples (wall s since the run started, MB): RSS at the
    end of the warm-up and at the end, the slope after the warm-up, the same over each half
    of those samples, and the verdict (module doc)."""
    t = np.asarray(t_s, dtype=float)
    y = np.asarray(rss_mb, dtype=float)
    keep = np.isfinite(y)
    t, y = t[keep], y[keep]
    after = t >= warmup_s
    half = int(after.sum()) // 2
    ta, ya = t[after], y[after]
    first, second = fit_slope(ta[:half], ya[:half]), fit_slope(ta[half:], ya[half:])
    verdict = "growing" if _grows(second) else "settling" if _grows(first) else "flat"
    return {
        "rss_warm_mb": float(ya[0]),
        "rss_end_mb": float(ya[-1]),
        "slope": asdict(fit_slope(ta, ya)),
        "first_half": asdict(first),
        "second_half": asdict(second),
        "verdict": verdict,
    }


class Viewer:
    """A shifter's open browser page on the web server at ``url``: /api/events read as it
    streams, VIEWS polled on their cadences; counts its requests and failures."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.counts = {"requests": 0, "errors": 0, "events": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._stream, daemon=True),
            threading.Thread(target=self._poll, daemon=True),
        ]

    def start(self) -> Viewer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> dict:
        """Stop and return {"requests", "errors", "events"} (events: status pushes read)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        return dict(self.counts)

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def _stream(self) -> None:
        while not self._stop.is_set():
            self._count("requests")
            try:
                with urllib.request.urlopen(f"{self.url}/api/events", timeout=10) as response:
                    for line in response:
                        if line.startswith(b"event: status"):
                            self._count("events")
                        if self._stop.is_set():
                            return
            except OSError:
                self._count("errors")
                self._stop.wait(1.0)

    def _poll(self) -> None:
        due = dict.fromkeys((path for path, _ in VIEWS), 0.0)
        every = dict(VIEWS)
        while not self._stop.wait(0.5):
            now = time.monotonic()
            for path, when in due.items():
                if now < when:
                    continue
                due[path] = now + every[path]
                self._count("requests")
                try:
                    with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as response:
                        response.read()
                except OSError:
                    self._count("errors")


def _rss_mb(pid: int | None) -> float:
    """Resident memory of a process (MB); NaN if it is not there."""
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / MB if pid else float("nan")
    except psutil.Error:
        return float("nan")


def _supervision(config: Config, data_dir: Path) -> dict[str, dict] | None:
    """Run control's view of the processes; None while it does not answer."""
    try:
        return request(config, data_dir, "status", timeout_s=2.0)
    except NudaqError:
        return None


def _ended(up: subprocess.Popen, err: Path, when: str) -> RuntimeError:
    """The error of a nudaq up that ended ``when``, with the end of its stderr."""
    return RuntimeError(f"nudaq up ended {when} ({up.returncode}): {err.read_text()[-2000:]}")


def _wait_for_run(up: subprocess.Popen, config: Config, data_dir: Path, err: Path) -> dict:
    """Run control's status once the run is going; RuntimeError if nudaq up ends first."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise _ended(up, err, "before its run started")
        status = _supervision(config, data_dir)
        if status and status.get("state") == "running":
            return status
        time.sleep(0.5)
    raise RuntimeError(f"nudaq up did not start a run in {STARTUP_S:.0f} s")


def _stop(up: subprocess.Popen) -> None:
    """SIGTERM to nudaq up, its clean stop as on Ctrl-C (it ends the run and stops its
    processes; SIGINT would not do, being ignored by processes started in the background);
    kill what is left."""
    import psutil

    try:
        children = psutil.Process(up.pid).children(recursive=True)
    except psutil.Error:
        children = []
    if up.poll() is None:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(STOP_S)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass


def _records(data_dir: Path) -> tuple[int, list[str]]:
    """Live analyses recorded, and the names of the alarms raised, in the soak's database."""
    engine = create_engine(db_url(None, data_dir))
    try:
        with engine.connect() as conn:
            analyses = conn.execute(text("SELECT count(*) FROM analysis_history")).scalar_one()
            alarms = conn.execute(text("SELECT name FROM alarms ORDER BY id")).scalars().all()
    finally:
        engine.dispose()
    return int(analyses), list(alarms)


def soak(
    seconds: float,
    speed: float,
    warmup_s: float | None = None,
    sample_s: float = SAMPLE_S,
    log=print,
) -> dict:
    """Run the soak for ``seconds`` of wall time (warm-up included) at ``speed``; its figures
    (module doc) as one JSON-ready dict, ``processes`` holding memory_trend per process."""
    warmup_s = min(WARMUP_S, seconds / 4) if warmup_s is None else warmup_s
    config = Config()
    data_dir = Path(tempfile.mkdtemp(prefix="nqk", dir="/tmp"))
    out_path, err_path = data_dir / "up.json", data_dir / "up.err"
    command = [sys.executable, "-m", "daq.cli", "up", "--sim", "--json", "--speed", str(speed)]
    command += ["--comment", "soak", "--data-dir", str(data_dir)]
    samples: dict[str, list[tuple[float, float]]] = {}
    failed = False
    try:
        with out_path.open("w") as out, err_path.open("w") as err:
            up = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        viewer = None
        try:
            status = _wait_for_run(up, config, data_dir, err_path)
            found = WEB_URL.search(err_path.read_text())
            if found is None:
                raise RuntimeError("nudaq up did not name its web server")
            viewer = Viewer(found.group(1)).start()
            log(f"soak: run going, sampling every {sample_s:g} s for {seconds:.0f} s ...")
            start = time.monotonic()
            taken = 0
            while (t := time.monotonic() - start) <= seconds:
                if up.poll() is not None:
                    raise _ended(up, err_path, "during the soak")
                status = _supervision(config, data_dir) or status
                pids = {n: c["pid"] for n, c in status["supervision"].items()} | {"up": up.pid}
                for name, pid in pids.items():
                    samples.setdefault(name, []).append((t, _rss_mb(pid)))
                taken += 1
                time.sleep(max(0.0, start + taken * sample_s - time.monotonic()))
        finally:
            web = viewer.stop() if viewer is not None else {}
            _stop(up)
        if up.returncode != 0:
            raise _ended(up, err_path, "with an error after SIGTERM")
        summary = json.loads(out_path.read_text())
        analyses, alarms = _records(data_dir)
    except RuntimeError as err:
        failed = True
        kept = f"the soak's data directory and logs are kept: {data_dir}"
        raise RuntimeError(f"{err}\n({kept})") from None
    finally:
        if not failed:
            shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "seconds": seconds,
        "speed": speed,
        "warmup_s": warmup_s,
        "sample_s": sample_s,
        "simulated_s": summary.get("elapsed_s"),
        "pulses": sum(summary["pulses"].values()),
        "lost": sum(summary["lost"].values()),
        "live_analyses": analyses,
        "alarms": alarms,
        "web": web,
        "restarts": {n: c["restarts"] for n, c in status["supervision"].items()},
        "processes": {
            name: memory_trend(*np.array(rows).T, warmup_s) for name, rows in samples.items()
        },
    }
