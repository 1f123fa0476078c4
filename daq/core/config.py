"""The configuration schema (pydantic) and its loading from one TOML file.

Defaults reproduce the Kuo-Sheng setup on simulated hardware; ``daq/configs/kuosheng.toml``
spells every key out. Unknown or invalid keys raise ConfigError naming the dotted key.
Network endpoints may contain ``{data_dir}``, replaced by the data directory at load.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from daq.core.errors import ConfigError

KUO_SHENG_POWER_MW = 2900.0
"""Thermal power of the Kuo-Sheng core (MW): the reactor-ON power of the simulated hardware
and the default of the planning tools."""
SHIFTER_TOKEN_ENV = "NUDAQ_SHIFTER_TOKEN"
"""The web shifter token, when not in the configuration (never stored with runs)."""
EXAMPLE_CONFIG = Path(__file__).parent / "configs" / "kuosheng.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Detector(_Section):
    """The HPGe target."""

    mass_kg: float = Field(1.06, gt=0, description="HPGe fiducial mass (kg)")
    threshold_keV: float = Field(5.0, ge=0, description="HPGe trigger threshold (keV)")


class Calibration(_Section):
    """ADC -> keV per HPGe channel: E = offset_keV[ch] + gain_keV_per_adc[ch] * adc."""

    gain_keV_per_adc: list[float] = Field(default_factory=lambda: [0.01], min_length=1)
    offset_keV: list[float] = Field(default_factory=lambda: [0.0], min_length=1)

    @model_validator(mode="after")
    def _same_length(self) -> Calibration:
        if len(self.gain_keV_per_adc) != len(self.offset_keV):
            raise ValueError("gain_keV_per_adc and offset_keV need one entry per channel each")
        if any(g <= 0 for g in self.gain_keV_per_adc):
            raise ValueError("gain_keV_per_adc must be positive")
        return self


class BuilderSettings(_Section):
    """Coincidence and veto windows (ns), veto thresholds, commit cadence."""

    ac_window_ns: int = Field(1000, ge=0, description="AC tag if an AC pulse is within +-w_ac")
    crv_pre_ns: int = Field(5000, ge=0, description="CRV tag window starts t - w_pre")
    crv_post_ns: int = Field(1000, ge=0, description="CRV tag window ends t + w_post")
    ac_threshold_adc: int = Field(0, ge=0, description="AC pulses below are ignored")
    crv_threshold_adc: int = Field(0, ge=0, description="CRV pulses below are ignored")
    commit_interval_s: float = Field(2.0, gt=0, le=60, description="SQL commit cadence (wall s)")
    raw_flush_interval_s: float = Field(1.0, gt=0, le=10, description="raw-file flush (wall s)")


class Spectrum(_Section):
    """Energy binning of the stored spectra; the first and last bins collect under/overflow."""

    bin_width_keV: float = Field(0.2, gt=0)
    max_keV: float = Field(1000.0, gt=0)

    @property
    def n_bins(self) -> int:
        """Number of bins from 0 to max_keV."""
        return int(round(self.max_keV / self.bin_width_keV))


class Frontend(_Section):
    """One serial front-end as the readout drives it."""

    url: str = Field("", description="pyserial URL; empty = given by the simulator at start")
    baudrate: int = Field(921600, gt=0)
    threshold_adc: int = Field(0, ge=0)
    rt_rate_hz: float = Field(
        0.1, ge=0, description="random triggers the ADC injects (Hz, HPGe only): CONF RTRATE"
    )
    frame_ms: int = Field(20, ge=1, le=1000, description="longest interval between frames")
    batch_ms: int = Field(50, ge=1, le=5000, description="longest interval between batches")
    buffer_pulses: int = Field(5_000_000, ge=1000, description="readout buffer before drops")
    heartbeat_ms: int = Field(200, ge=10, description="heartbeat when the stream is quiet")
    timeout_s: float = Field(5.0, gt=0, description="silence after which the device is dead")


class Frontends(_Section):
    hpge: Frontend = Field(default_factory=Frontend)
    acv: Frontend = Field(default_factory=Frontend)
    crv: Frontend = Field(default_factory=Frontend)


class Reactor(_Section):
    """How the reactor state follows the measured thermal power."""

    on_threshold_MW: float = Field(100.0, ge=0, description="ON above this thermal power (MW)")


class SlowControl(_Section):
    url: str = Field("", description="pyserial URL; empty = given by the simulator")
    poll_interval_s: float = Field(1.0, gt=0, le=60, description="poll cadence (simulated s)")


class Network(_Section):
    """ZeroMQ endpoints; each process may live on its own host."""

    builder_data: str = "ipc://{data_dir}/sockets/builder-data"
    run_control: str = "ipc://{data_dir}/sockets/run-control"
    transitions: str = "ipc://{data_dir}/sockets/transitions"
    monitor: str = "ipc://{data_dir}/sockets/monitor"
    send_hwm: int = Field(200, ge=1, description="batches queued in ZeroMQ before backpressure")


class XrayLine(_Section):
    energy_keV: float = Field(gt=0)
    rate_per_kg_day: float = Field(ge=0)


class ReactorPeriod(_Section):
    """From ``start_s`` (simulated s since the simulator started) the power is ``power_MW``."""

    start_s: float = Field(ge=0)
    power_MW: float = Field(ge=0)


class Faults(_Section):
    """Fault injection on a simulated front-end's line (hardware_sim.faults): damaged frames,
    disconnects, stalls, lost END frames, noisy text replies. ``*_per_s`` are rates per
    simulated second."""

    noise_bytes_per_s: float = Field(0.0, ge=0, description="random bytes inserted")
    dropped_bytes_per_s: float = Field(0.0, ge=0, description="bytes removed")
    corrupt_frames_per_s: float = Field(0.0, ge=0, description="frames with a flipped bit")
    disconnect_after_s: float = Field(0.0, ge=0, description="close the line after (0 = never)")
    stall_every_s: float = Field(0.0, ge=0, description="stop sending for stall_s (0 = never)")
    stall_s: float = Field(0.0, ge=0)
    end_frame_loss: float = Field(
        0.0, ge=0, le=1, description="probability that the END frame after STOP is lost"
    )
    reply_noise_bytes: int = Field(
        0, ge=0, le=1024, description="random bytes in front of every text reply"
    )


class SimFaults(_Section):
    hpge: Faults = Field(default_factory=Faults)
    acv: Faults = Field(default_factory=Faults)
    crv: Faults = Field(default_factory=Faults)


class Sim(_Section):
    """The simulated detector physics and hardware (hardware_sim)."""

    seed: int = 1
    speed: float = Field(1.0, gt=0, description="simulated seconds per wall second")
    transport: Literal["tcp", "pty"] = "tcp"
    flat_cpd: float = Field(1.0, ge=0, description="continuum after both vetoes (cpd)")
    continuum_max_keV: float = Field(1000.0, gt=0)
    compton_factor: float = Field(
        3.0, ge=0, description="AC-coincident HPGe events per veto-free continuum event"
    )
    cosmic_factor: float = Field(
        1.0, ge=0, description="CRV-induced HPGe events per veto-free continuum event"
    )
    xray_lines: list[XrayLine] = Field(
        default_factory=lambda: [
            XrayLine(energy_keV=10.37, rate_per_kg_day=20.0),
            XrayLine(energy_keV=9.66, rate_per_kg_day=4.0),
            XrayLine(energy_keV=8.98, rate_per_kg_day=3.0),
            XrayLine(energy_keV=1.30, rate_per_kg_day=2.0),
        ]
    )
    resolution_a_keV: float = Field(0.6, ge=0, description="FWHM = sqrt(a^2 + b E)")
    resolution_b_keV: float = Field(0.028, ge=0, description="FWHM = sqrt(a^2 + b E), keV")
    gain_keV_per_adc: float = Field(0.01, gt=0, description="the simulated ADC's true gain")
    rt_rate_hz: float = Field(
        0.1, ge=0, description="simulated ADC's power-on RT rate (Hz) until CONF RTRATE"
    )
    adc_dead_time_ns: int = Field(20_000, ge=0, description="ADC conversion dead time (ns)")
    acv_singles_hz: float = Field(1000.0, ge=0)
    crv_singles_hz: float = Field(300.0, ge=0)
    ac_delay_sigma_ns: float = Field(50.0, ge=0, description="AC - HPGe time spread (ns)")
    crv_lag_min_ns: float = Field(20.0, ge=0, description="HPGe lags its CRV pulse by")
    crv_lag_max_ns: float = Field(80.0, ge=0)
    mu_nu_1e10: float = Field(0.0, ge=0, description="injected mu_nu (10^-10 mu_B)")
    distance_m: float = Field(28.0, gt=0)
    reactor: list[ReactorPeriod] = Field(
        default_factory=lambda: [ReactorPeriod(start_s=0, power_MW=KUO_SHENG_POWER_MW)]
    )
    hv_V: float = Field(3000.0, description="HPGe bias reported by slow control")
    faults: SimFaults = Field(default_factory=SimFaults)
    truth: bool = Field(True, description="write the generator's ground truth file")

    def hold_reactor(self, state: Literal["on", "off"]) -> None:
        """Replace the reactor schedule by a constant state: ON at KUO_SHENG_POWER_MW, OFF at
        0 MW."""
        power = KUO_SHENG_POWER_MW if state == "on" else 0.0
        self.reactor = [ReactorPeriod(start_s=0, power_MW=power)]


class Alarm(_Section):
    """Alarm thresholds (used by monitoring)."""

    silent_stream_s: float = Field(10.0, gt=0)
    rate_window_s: float = Field(60.0, gt=0)
    rate_p_value: float = Field(1e-4, gt=0, lt=1)
    ln2_low_pct: float = Field(20.0, ge=0)
    hv_min_V: float = Field(2500.0, ge=0)
    disk_low_GB: float = Field(1.0, ge=0)


class Analysis(_Section):
    window_keV: tuple[float, float] = (12.0, 60.0)
    interval_s: float = Field(60.0, gt=0, description="live analysis cadence (wall s)")


class Web(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    shifter_token: str = Field("", description="or env NUDAQ_SHIFTER_TOKEN")


class Config(_Section):
    """The whole nudaq configuration."""

    detector: Detector = Field(default_factory=Detector)
    calibration: Calibration = Field(default_factory=Calibration)
    builder: BuilderSettings = Field(default_factory=BuilderSettings)
    spectrum: Spectrum = Field(default_factory=Spectrum)
    frontends: Frontends = Field(default_factory=Frontends)
    reactor: Reactor = Field(default_factory=Reactor)
    slowcontrol: SlowControl = Field(default_factory=SlowControl)
    network: Network = Field(default_factory=Network)
    sim: Sim = Field(default_factory=Sim)
    alarms: Alarm = Field(default_factory=Alarm)
    analysis: Analysis = Field(default_factory=Analysis)
    web: Web = Field(default_factory=Web)

    def endpoint(self, name: str, data_dir: Path) -> str:
        """A network endpoint with ``{data_dir}`` filled in."""
        return getattr(self.network, name).replace("{data_dir}", str(data_dir))

    def snapshot(self) -> str:
        """Canonical JSON of the whole configuration (stored with every run and raw file),
        without the shifter token: runs and raw files are shared, the token is not."""
        data = self.model_dump(mode="json")
        data["web"]["shifter_token"] = ""
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """SHA-256 of the snapshot: the configuration's identity."""
        return hashlib.sha256(self.snapshot().encode()).hexdigest()


def _describe(err: ValidationError, source: str) -> ConfigError:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"{source}: key '{key}': {msg}")
    return ConfigError("\n".join(lines))


def parse_config(data: dict, source: str = "configuration") -> Config:
    """Validate a configuration mapping; ConfigError names every wrong key."""
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise _describe(err, source) from None


def load_config(path: str | Path | None = None) -> Config:
    """Configuration from a TOML (or snapshot JSON) file; defaults when path is None."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read configuration {path}: {err.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {err}"
        ) from None
    return parse_config(data, str(path))
