"""The configuration schema (pydantic) and its loading from one TOML file.

Defaults reproduce the Kuo-Sheng setup on simulated hardware; ``daq/configs/kuosheng.toml``
spells every key out. Unknown or invalid keys raise ConfigError naming the dotted key.
Network endpoints may contain ``{data_dir}``, replaced by the data directory at load.

Values are strict, so that ``nudaq config check`` refuses what would break a process later:

- numbers (the annotated types ``Int`` and ``Float``, used by every numeric key): a boolean
  or a string is never a number (``true`` is not 1, ``"2000"`` is not 2000); an integer key
  takes integers, and a float only when it has no fraction (``5.0`` is taken as 5: JSON and
  TOML writers may spell a count as a float, and it is the same number; ``5.5`` is an
  error); a float key takes floats and integers (``speed = 5``), never NaN or infinity.
  The same holds for every entry of a list of numbers (calibration, ``window_keV``).
- strings (``Str``) and booleans (``Bool``) are only strings and booleans.
- ranges: every key has the range its users need (the ``Field`` bounds below, the limits
  ``MAX_*`` here), and a model validator of the section (or of Config, across sections)
  checks what depends on several keys; its error names the dotted key(s) concerned.
- network endpoints parse as ZeroMQ endpoints that one process binds and others connect
  to: ``ipc://PATH`` or ``tcp://HOST:PORT`` (port 1-65535; no ``*``, which cannot be
  connected to, and no ``inproc://``, which does not leave its process); ``{data_dir}`` is
  the only placeholder.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import numbers
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from daq.core.errors import ConfigError

KUO_SHENG_POWER_MW = 2900.0
"""Thermal power of the Kuo-Sheng core (MW): the reactor-ON power of the simulated hardware
and the default of the planning tools."""
SHIFTER_TOKEN_ENV = "NUDAQ_SHIFTER_TOKEN"
"""The web shifter token, when not in the configuration (never stored with runs)."""
SMTP_PASSWORD_ENV = "NUDAQ_SMTP_PASSWORD"
"""The password of the alarm e-mails' SMTP login (the configuration holds only the user)."""
SHIFTER_TOKEN_KEY_ENV = "NUDAQ_SHIFTER_TOKEN_KEY"
"""Set by ``nudaq up`` when it hands its web server the configuration's token in
SHIFTER_TOKEN_ENV: the key the token came from, which the server names to the shifter."""
EXAMPLE_CONFIG = Path(__file__).parent / "configs" / "kuosheng.toml"

MAX_BINS = 100_000
"""Most spectrum bins. Every builder update, its running total and each spectrum filler hold
2 reactor states x 5 categories x bins int64 counters (8 MB at this limit, per replay
variant too), and 10^5 bins are 10 eV over the default 1000 keV: 60 times finer than the
HPGe's resolution, so finer binning only costs memory."""
MAX_WINDOW_NS = 1_000_000
"""Widest coincidence window (ns): 1 ms, far beyond any veto's physics (us). The builder
holds every veto pulse within the window of an unbuilt HPGe pulse, and the horizon waits
that long for the veto streams: a 100 s window would hold 10^5 s of vetoes."""
MAX_RATE_HZ = 1e6
"""Highest simulated rate of any source, and of all HPGe sources together (Hz): also the
simulated ADC's own bound on ``CONF RTRATE``."""
MAX_ENERGY_KEV = 20_000.0
"""Highest energy of the simulated continuum, of an X-ray line and of the spectrum (keV):
every gamma ray a germanium detector sees (neutron captures up to ~10 MeV) fits."""
MAX_POWER_MW = 10_000.0
"""Highest reactor thermal power (MW): the simulated slow control's bound on CONF POWER."""
MAX_HV_V = 10_000.0
"""Highest HPGe bias (V): the simulated slow control's bound on CONF HV."""
MAX_ADC = 2**32 - 1
"""Highest ADC value (pulses carry uint32): the bound of every ADC threshold."""
MAX_SPEED = 10_000.0
"""Fastest simulated clock (x real time): the live benchmark goes to 6400; the DAQ clock is
int64 ns since 1970 and at this speed still lasts 8 days of wall time."""
MAX_CHANNELS = 65536
"""Most calibrated channels (pulses carry a uint16 channel)."""
IPC_PATH_MAX = 107
"""Longest path of an ipc:// endpoint (bytes, the Unix socket address)."""
SECONDS_PER_DAY = 86400.0


# -- strict value types -----------------------------------------------------------------------


def _shown(value: object) -> str:
    """What a wrong value is, for an error message."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def _error(kind: str, message: str) -> PydanticCustomError:
    """A validation error whose message is ``message`` as it is."""
    return PydanticCustomError(kind, "{message}", {"message": message})


def _strict_int(value: object) -> int:
    """An integer: never a bool or a string; a float only without fraction (5.0 -> 5)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if math.isfinite(value) and float(value).is_integer():
            return int(value)
        raise _error("int_strict", f"must be an integer, not {value!r}")
    raise _error("int_strict", f"must be an integer, not {_shown(value)}")


def _strict_float(value: object) -> float:
    """A finite float: never a bool or a string; integers are taken as floats."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            result = float(value)
        except OverflowError:
            raise _error("float_strict", f"{len(str(value))}-digit number, too large") from None
        if not math.isfinite(result):
            raise _error("float_strict", f"must be a finite number, not {value!r}")
        return result
    raise _error("float_strict", f"must be a number, not {_shown(value)}")


Int = Annotated[int, BeforeValidator(_strict_int)]
"""An integer key (see the module docstring); bounds go in its Field."""
Float = Annotated[float, BeforeValidator(_strict_float)]
"""A float key (see the module docstring); bounds go in its Field."""
Str = StrictStr
Bool = StrictBool

_PLACEHOLDER = "{data_dir}"
_TCP = re.compile(r"tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]+)")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
ENDPOINT_FORMS = "ipc://PATH or tcp://HOST:PORT (port 1-65535)"


def _endpoint(value: object) -> str:
    """A ZeroMQ endpoint one process binds and others connect to (``ipc://``, ``tcp://``);
    ``{data_dir}`` allowed."""
    if not isinstance(value, str):
        raise _error("endpoint", f"must be a string, not {_shown(value)}")
    rest = value.replace(_PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        raise _error("endpoint", f"{value!r}: the only placeholder is {_PLACEHOLDER}")
    why = ""
    if value.startswith("ipc://"):
        path = value.removeprefix("ipc://")
        if not path or "\0" in path:
            why = "an ipc endpoint needs a path"
        elif _PLACEHOLDER not in path and len(path.encode()) > IPC_PATH_MAX:
            why = f"an ipc path is at most {IPC_PATH_MAX} bytes"
    elif value.startswith("inproc://"):
        why = "inproc endpoints do not leave their process; nudaq's processes need ipc or tcp"
    elif value.startswith("tcp://"):
        match = _TCP.fullmatch(value)
        if match is None:
            why = "a tcp endpoint is tcp://HOST:PORT (no *: the other processes connect to it)"
        else:
            host, port = match["host"], match["port"]
            if host.startswith("["):
                try:
                    ipaddress.IPv6Address(host[1:-1])
                except ValueError:
                    why = f"{host} is not an IPv6 address"
            if not 1 <= int(port) <= 65535:
                why = f"port {port} is not within 1-65535"
    else:
        why = f"not a ZeroMQ endpoint ({ENDPOINT_FORMS})"
    if why:
        raise _error("endpoint", f"{value!r}: {why}")
    return value


Endpoint = Annotated[str, BeforeValidator(_endpoint)]


def _host(value: object) -> str:
    """An address to bind: an IP address, a host name, or empty (every interface)."""
    if not isinstance(value, str):
        raise _error("host", f"must be a string, not {_shown(value)}")
    if not value:
        return value
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.fullmatch(value):
            raise _error("host", f"{value!r} is neither an IP address nor a host name") from None
    return value


Host = Annotated[str, BeforeValidator(_host)]


class Invalid(ValueError):
    """A model validator's error naming its key: ``key`` and the keys ``refs`` (written
    ``{0}``, ``{1}``... in ``reason``) are relative to the model that raises it, and
    ``_describe`` puts the section's dotted location in front of them."""

    def __init__(self, key: str, reason: str, *refs: str) -> None:
        self.key = key
        self.reason = reason
        self.refs = refs
        super().__init__(f"{key}: {reason.format(*refs)}")

    def described(self, prefix: str) -> tuple[str, str]:
        """(full dotted key, message with the full dotted keys) under section ``prefix``."""

        def full(key: str) -> str:
            return f"{prefix}.{key}" if prefix else key

        return full(self.key), self.reason.format(*map(full, self.refs))


# -- sections ---------------------------------------------------------------------------------


_MISSING = object()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __setattr__(self, name: str, value: object) -> None:
        """Assignments are validated too (``config.sim.speed = x``, command-line overrides):
        a wrong value is a ConfigError naming the key within its section, and the section
        keeps its previous value (pydantic would keep a value its model validator refused)."""
        previous = self.__dict__.get(name, _MISSING)
        try:
            super().__setattr__(name, value)
        except ValidationError as err:
            if previous is not _MISSING:
                self.__dict__[name] = previous
            raise _describe(err, type(self).__name__) from None


class Detector(_Section):
    """The HPGe target."""

    mass_kg: Float = Field(1.06, gt=0, le=1000, description="HPGe fiducial mass (kg)")
    threshold_keV: Float = Field(
        5.0, ge=0, description="HPGe trigger threshold (keV; below spectrum.max_keV)"
    )


_Gain = Annotated[Float, Field(gt=0)]


class Calibration(_Section):
    """ADC -> keV per HPGe channel: E = offset_keV[ch] + gain_keV_per_adc[ch] * adc."""

    gain_keV_per_adc: list[_Gain] = Field(
        default_factory=lambda: [0.01], min_length=1, max_length=MAX_CHANNELS
    )
    offset_keV: list[Float] = Field(
        default_factory=lambda: [0.0], min_length=1, max_length=MAX_CHANNELS
    )

    @model_validator(mode="after")
    def _same_length(self) -> Calibration:
        if len(self.gain_keV_per_adc) != len(self.offset_keV):
            raise Invalid(
                "offset_keV",
                f"needs one entry per channel: {len(self.gain_keV_per_adc)} in {{0}},"
                f" {len(self.offset_keV)} here",
                "gain_keV_per_adc",
            )
        return self


class BuilderSettings(_Section):
    """Coincidence and veto windows (ns), veto thresholds, commit cadence."""

    ac_window_ns: Int = Field(
        1000, ge=0, le=MAX_WINDOW_NS, description="AC tag if an AC pulse is within +-w_ac"
    )
    crv_pre_ns: Int = Field(
        5000, ge=0, le=MAX_WINDOW_NS, description="CRV tag window starts t - w_pre"
    )
    crv_post_ns: Int = Field(
        1000, ge=0, le=MAX_WINDOW_NS, description="CRV tag window ends t + w_post"
    )
    ac_threshold_adc: Int = Field(0, ge=0, le=MAX_ADC, description="AC pulses below are ignored")
    crv_threshold_adc: Int = Field(0, ge=0, le=MAX_ADC, description="CRV pulses below are ignored")
    commit_interval_s: Float = Field(2.0, gt=0, le=60, description="SQL commit cadence (wall s)")
    raw_flush_interval_s: Float = Field(1.0, gt=0, le=10, description="raw-file flush (wall s)")
    raw_fsync_interval_s: Float = Field(
        1.0, ge=0, le=3600, description="raw-file fsync to the disk (wall s; 0 = every flush)"
    )
    max_batch_pulses: Int = Field(
        262_144,
        ge=262_144,
        le=16_777_216,
        description="pulses per batch above which a batch is refused: at least twice the"
        " largest batch a readout or a replay sends (131072), 4 MB at the default",
    )
    max_lead_s: Float = Field(
        86_400.0,
        ge=1000,
        le=1e9,
        description="a watermark may run ahead of its stream's last one by at most this (s)",
    )
    drain_timeout_s: Float = Field(
        10.0, gt=0, le=600, description="wait at stop for every stream's end of run (wall s)"
    )
    max_clock_lead_s: Float = Field(
        10.0,
        ge=1,
        le=3600,
        description="live: a watermark may run ahead of the DAQ clock by at most this (wall s"
        " of clock time; the clock runs sim.speed times the wall clock, 1 on real hardware)",
    )


class Spectrum(_Section):
    """Energy binning of the stored spectra; the first and last bins collect under/overflow."""

    bin_width_keV: Float = Field(0.2, gt=0, description=f"1 to {MAX_BINS} bins up to max_keV")
    max_keV: Float = Field(1000.0, gt=0, le=MAX_ENERGY_KEV)

    @property
    def n_bins(self) -> int:
        """Number of bins from 0 to max_keV."""
        return int(round(self.max_keV / self.bin_width_keV))

    @model_validator(mode="after")
    def _bins(self) -> Spectrum:
        ratio = self.max_keV / self.bin_width_keV
        if not (math.isfinite(ratio) and 1 <= round(ratio) <= MAX_BINS):
            raise Invalid(
                "bin_width_keV",
                f"{{0}} / {{1}} = {ratio:.4g} bins; must give 1 to {MAX_BINS} bins",
                "max_keV",
                "bin_width_keV",
            )
        return self


class Frontend(_Section):
    """One serial front-end as the readout drives it."""

    url: Str = Field("", description="pyserial URL; empty = given by the simulator at start")
    baudrate: Int = Field(921600, ge=50, le=4_000_000)
    threshold_adc: Int = Field(0, ge=0, le=MAX_ADC)
    rt_rate_hz: Float = Field(
        0.1,
        ge=0,
        le=MAX_RATE_HZ,
        description="random triggers the ADC injects (Hz, HPGe only): CONF RTRATE",
    )
    frame_ms: Int = Field(20, ge=1, le=1000, description="longest interval between frames")
    batch_ms: Int = Field(50, ge=1, le=5000, description="longest interval between batches")
    buffer_pulses: Int = Field(
        5_000_000, ge=1000, le=100_000_000, description="readout buffer before drops"
    )
    heartbeat_ms: Int = Field(
        200, ge=10, le=60_000, description="heartbeat when the stream is quiet"
    )
    timeout_s: Float = Field(
        5.0,
        ge=0.1,
        le=3600,
        description="silence after which the device is dead (more than 2 x frame_ms)",
    )

    @model_validator(mode="after")
    def _timeout_after_frames(self) -> Frontend:
        if self.timeout_s * 1000 <= 2 * self.frame_ms:
            raise Invalid(
                "timeout_s",
                f"must be more than 2 x {{0}} ({2 * self.frame_ms} ms): the device sends a"
                " frame at least that often, a shorter silence is no sign of a dead device",
                "frame_ms",
            )
        return self


class Frontends(_Section):
    hpge: Frontend = Field(default_factory=Frontend)
    acv: Frontend = Field(default_factory=Frontend)
    crv: Frontend = Field(default_factory=Frontend)


class Reactor(_Section):
    """How the reactor state follows the measured thermal power."""

    on_threshold_MW: Float = Field(
        100.0, ge=0, le=MAX_POWER_MW, description="ON above this thermal power (MW)"
    )


class SlowControl(_Section):
    url: Str = Field("", description="pyserial URL; empty = given by the simulator")
    poll_interval_s: Float = Field(1.0, gt=0, le=60, description="poll cadence (simulated s)")


class Network(_Section):
    """ZeroMQ endpoints; each process may live on its own host."""

    builder_data: Endpoint = "ipc://{data_dir}/sockets/builder-data"
    run_control: Endpoint = "ipc://{data_dir}/sockets/run-control"
    transitions: Endpoint = "ipc://{data_dir}/sockets/transitions"
    monitor: Endpoint = "ipc://{data_dir}/sockets/monitor"
    send_hwm: Int = Field(
        200, ge=1, le=100_000, description="batches queued in ZeroMQ before backpressure"
    )

    @model_validator(mode="after")
    def _distinct(self) -> Network:
        seen: dict[str, str] = {}
        for name in ("builder_data", "run_control", "transitions", "monitor"):
            endpoint = getattr(self, name)
            if endpoint in seen:
                raise Invalid(name, "is the same endpoint as {0}: both are bound", seen[endpoint])
            seen[endpoint] = name
        return self


class XrayLine(_Section):
    energy_keV: Float = Field(gt=0, le=MAX_ENERGY_KEV)
    rate_per_kg_day: Float = Field(ge=0, le=MAX_RATE_HZ * SECONDS_PER_DAY)


class ReactorPeriod(_Section):
    """From ``start_s`` (simulated s since the simulator started) the power is ``power_MW``."""

    start_s: Float = Field(ge=0)
    power_MW: Float = Field(ge=0, le=MAX_POWER_MW)


class Faults(_Section):
    """Fault injection on a simulated front-end's line (hardware_sim.faults): damaged frames,
    disconnects, stalls, lost END frames, noisy text replies. ``*_per_s`` are rates per
    simulated second."""

    noise_bytes_per_s: Float = Field(0.0, ge=0, le=MAX_RATE_HZ, description="random bytes inserted")
    dropped_bytes_per_s: Float = Field(0.0, ge=0, le=MAX_RATE_HZ, description="bytes removed")
    corrupt_frames_per_s: Float = Field(
        0.0, ge=0, le=MAX_RATE_HZ, description="frames with a flipped bit"
    )
    disconnect_after_s: Float = Field(0.0, ge=0, description="close the line after (0 = never)")
    stall_every_s: Float = Field(0.0, ge=0, description="stop sending for stall_s (0 = never)")
    stall_s: Float = Field(0.0, ge=0, description="below stall_every_s")
    end_frame_loss: Float = Field(
        0.0, ge=0, le=1, description="probability that the END frame after STOP is lost"
    )
    reply_noise_bytes: Int = Field(
        0, ge=0, le=1024, description="random bytes in front of every text reply"
    )

    @model_validator(mode="after")
    def _stalls_end(self) -> Faults:
        if self.stall_every_s > 0 and self.stall_s >= self.stall_every_s:
            raise Invalid(
                "stall_s",
                f"must be less than {{0}} ({self.stall_every_s:g}): the device would never"
                " send again",
                "stall_every_s",
            )
        return self


class SimFaults(_Section):
    hpge: Faults = Field(default_factory=Faults)
    acv: Faults = Field(default_factory=Faults)
    crv: Faults = Field(default_factory=Faults)


class Sim(_Section):
    """The simulated detector physics and hardware (hardware_sim)."""

    seed: Int = Field(1, ge=0, le=2**64 - 1)
    speed: Float = Field(1.0, gt=0, le=MAX_SPEED, description="simulated seconds per wall second")
    transport: Literal["tcp", "pty"] = "tcp"
    flat_cpd: Float = Field(1.0, ge=0, description="continuum after both vetoes (cpd)")
    continuum_max_keV: Float = Field(
        1000.0, gt=0, le=MAX_ENERGY_KEV, description="above detector.threshold_keV"
    )
    compton_factor: Float = Field(
        3.0, ge=0, le=1000, description="AC-coincident HPGe events per veto-free continuum event"
    )
    cosmic_factor: Float = Field(
        1.0, ge=0, le=1000, description="CRV-induced HPGe events per veto-free continuum event"
    )
    xray_lines: list[XrayLine] = Field(
        default_factory=lambda: [
            XrayLine(energy_keV=10.37, rate_per_kg_day=20.0),
            XrayLine(energy_keV=9.66, rate_per_kg_day=4.0),
            XrayLine(energy_keV=8.98, rate_per_kg_day=3.0),
            XrayLine(energy_keV=1.30, rate_per_kg_day=2.0),
        ]
    )
    resolution_a_keV: Float = Field(0.6, ge=0, le=1000, description="FWHM = sqrt(a^2 + b E)")
    resolution_b_keV: Float = Field(0.028, ge=0, le=1000, description="FWHM = sqrt(a^2 + b E), keV")
    gain_keV_per_adc: Float = Field(
        0.01, gt=0, le=1000, description="the simulated ADC's true gain"
    )
    rt_rate_hz: Float = Field(
        0.1,
        ge=0,
        le=MAX_RATE_HZ,
        description="simulated ADC's power-on RT rate (Hz) until CONF RTRATE",
    )
    adc_dead_time_ns: Int = Field(
        20_000, ge=0, le=1_000_000_000, description="ADC conversion dead time (ns)"
    )
    acv_singles_hz: Float = Field(1000.0, ge=0, le=MAX_RATE_HZ)
    crv_singles_hz: Float = Field(300.0, ge=0, le=MAX_RATE_HZ)
    ac_delay_sigma_ns: Float = Field(
        50.0, ge=0, le=MAX_WINDOW_NS, description="AC - HPGe time spread (ns)"
    )
    crv_lag_min_ns: Float = Field(
        20.0, ge=0, le=MAX_WINDOW_NS, description="HPGe lags its CRV pulse by"
    )
    crv_lag_max_ns: Float = Field(
        80.0, ge=0, le=MAX_WINDOW_NS, description="at least crv_lag_min_ns"
    )
    mu_nu_1e10: Float = Field(0.0, ge=0, le=1000, description="injected mu_nu (10^-10 mu_B)")
    distance_m: Float = Field(28.0, ge=1, le=10_000)
    reactor: list[ReactorPeriod] = Field(
        default_factory=lambda: [ReactorPeriod(start_s=0, power_MW=KUO_SHENG_POWER_MW)]
    )
    hv_V: Float = Field(3000.0, ge=0, le=MAX_HV_V, description="HPGe bias reported by slow control")
    faults: SimFaults = Field(default_factory=SimFaults)
    truth: Bool = Field(True, description="write the generator's ground truth file")

    @model_validator(mode="after")
    def _consistent(self) -> Sim:
        if self.crv_lag_min_ns > self.crv_lag_max_ns:
            raise Invalid(
                "crv_lag_min_ns",
                f"must be at most {{0}} ({self.crv_lag_max_ns:g})",
                "crv_lag_max_ns",
            )
        if self.resolution_a_keV == 0 and self.resolution_b_keV == 0:
            raise Invalid(
                "resolution_a_keV",
                "and {0} cannot both be 0: the analysis templates divide by the resolution",
                "resolution_b_keV",
            )
        starts = [p.start_s for p in self.reactor]
        for i, start in enumerate(starts):
            if start in starts[:i]:
                raise Invalid(
                    f"reactor.{i}.start_s", f"another period starts at {start:g} s already"
                )
        return self

    def hold_reactor(self, state: Literal["on", "off"]) -> None:
        """Replace the reactor schedule by a constant state: ON at KUO_SHENG_POWER_MW, OFF at
        0 MW."""
        power = KUO_SHENG_POWER_MW if state == "on" else 0.0
        self.reactor = [ReactorPeriod(start_s=0, power_MW=power)]


_ExpectedHz = Annotated[Float, Field(ge=0, le=MAX_RATE_HZ, description="Hz; 0 = unknown")]


class ExpectedRates(_Section):
    """Expected rates of the counters under the rate test (Hz of DAQ time); 0 = unknown, then
    taken from recent good runs, else measured in the run itself (online.monitoring.alarms)."""

    hpge: _ExpectedHz = 0.0
    acv: _ExpectedHz = 0.0
    crv: _ExpectedHz = 0.0
    candidate: _ExpectedHz = 0.0


_EMAIL_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+")


def _email_address(value: object) -> str:
    """An e-mail address (something@somewhere)."""
    if not isinstance(value, str):
        raise _error("email", f"must be a string, not {_shown(value)}")
    if not _EMAIL_ADDRESS.fullmatch(value):
        raise _error("email", f"{value!r} is not an e-mail address (name@host)")
    return value


EmailAddress = Annotated[str, BeforeValidator(_email_address)]


class Email(_Section):
    """Critical alarms by e-mail over SMTP (online.monitoring.notify); off while host is empty.
    The login password is never in the configuration: it is $NUDAQ_SMTP_PASSWORD."""

    host: Host = Field("", description="SMTP server; empty = no e-mail")
    port: Int = Field(25, ge=1, le=65535)
    sender: EmailAddress = "nudaq@localhost"
    recipients: list[EmailAddress] = Field(default_factory=list, max_length=100)
    starttls: Bool = Field(False, description="STARTTLS before the login and the message")
    username: Str = Field("", description="SMTP login (password: env NUDAQ_SMTP_PASSWORD)")

    @model_validator(mode="after")
    def _addressed(self) -> Email:
        if self.host and not self.recipients:
            raise Invalid("recipients", "is empty while {0} is set: nobody would be told", "host")
        return self


def _http_url(value: object) -> str:
    """Empty, or an http:// or https:// URL with a host."""
    if not isinstance(value, str):
        raise _error("url", f"must be a string, not {_shown(value)}")
    if value and not re.fullmatch(r"https?://[^/\s?#]+[^\s]*", value):
        raise _error("url", f"{value!r} is not an http:// or https:// URL")
    return value


class Webhook(_Section):
    """Critical alarms POSTed as JSON to a URL (online.monitoring.notify); off while empty."""

    url: Annotated[str, BeforeValidator(_http_url)] = Field(
        "", description="http(s) URL; empty = no webhook"
    )


class Alarm(_Section):
    """Alarm thresholds (used by monitoring; online.monitoring.alarms explains each)."""

    silent_stream_s: Float = Field(10.0, gt=0, description="wall s")
    rate_window_s: Float = Field(60.0, gt=0, description="s of DAQ time")
    rate_p_value: Float = Field(1e-4, gt=0, lt=1, description="a rate alarm is raised below")
    rate_clear_p_value: Float = Field(
        0.01, gt=0, lt=1, description="and cleared at or above (> rate_p_value)"
    )
    rate_tolerance: Float = Field(
        0.1, ge=0, lt=1, description="relative deviation from the expected rate that is no alarm"
    )
    reference_runs: Int = Field(
        5, ge=0, le=1000, description="recent good runs giving unknown expected rates (0 = none)"
    )
    ln2_low_pct: Float = Field(20.0, ge=0, le=100)
    hv_min_V: Float = Field(2500.0, ge=0, le=MAX_HV_V)
    disk_low_GB: Float = Field(1.0, ge=0)
    disk_critical_GB: Float = Field(
        0.5, ge=0, description="below disk_low_GB; the builder stops the run at this floor"
    )
    notify_attempts: Int = Field(3, ge=1, le=100, description="tries per notification")
    notify_retry_s: Float = Field(30.0, gt=0, le=3600, description="wall s between tries")
    notify_timeout_s: Float = Field(10.0, gt=0, le=300, description="of one try (wall s)")
    expected_hz: ExpectedRates = Field(default_factory=ExpectedRates)
    email: Email = Field(default_factory=Email)
    webhook: Webhook = Field(default_factory=Webhook)

    @model_validator(mode="after")
    def _ordered(self) -> Alarm:
        if self.disk_critical_GB >= self.disk_low_GB:
            raise Invalid(
                "disk_critical_GB",
                f"{self.disk_critical_GB:g} GB must be below {{0}} ({self.disk_low_GB:g} GB)",
                "disk_low_GB",
            )
        if self.rate_clear_p_value <= self.rate_p_value:
            raise Invalid(
                "rate_clear_p_value",
                f"{self.rate_clear_p_value:g} must be above {{0}} ({self.rate_p_value:g}):"
                " an alarm would clear as soon as it is raised",
                "rate_p_value",
            )
        return self


_Energy = Annotated[Float, Field(ge=0)]


class Analysis(_Section):
    window_keV: tuple[_Energy, _Energy] = Field(
        (12.0, 60.0), description="lo < hi, on spectrum bin edges, up to spectrum.max_keV"
    )
    interval_s: Float = Field(60.0, gt=0, description="live analysis cadence (wall s)")

    @model_validator(mode="after")
    def _ordered(self) -> Analysis:
        lo, hi = self.window_keV
        if lo >= hi:
            raise Invalid("window_keV", f"[{lo:g}, {hi:g}] keV: lo must be below hi")
        return self


class Web(_Section):
    host: Host = Field("127.0.0.1", description="IP address or host name; empty = all")
    port: Int = Field(8080, ge=0, le=65535, description="0 = any free port")
    shifter_token: Str = Field("", description="or env NUDAQ_SHIFTER_TOKEN")
    stale_after_s: Float = Field(
        5.0, gt=0, le=3600, description="the pages say 'no data since' past this snapshot age"
    )
    db_timeout_s: Float = Field(
        2.0, ge=0.1, le=60, description="longest wait for the database before a 503 (s)"
    )


class Supervision(_Section):
    """Restarts of processes that die (``nudaq up``'s supervisor, daq.control.supervisor)."""

    restart_backoff_s: Float = Field(
        0.5, gt=0, le=60, description="wait before the first restart; doubles per recent one"
    )
    max_backoff_s: Float = Field(30.0, gt=0, le=3600, description="longest wait before a restart")
    crash_loop_restarts: Int = Field(
        5, ge=1, le=1000, description="this many restarts of one process within the window"
    )
    crash_loop_window_s: Float = Field(
        300.0, gt=0, le=86400, description="... is a crash loop: the system stops (wall s)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Supervision:
        if self.max_backoff_s < self.restart_backoff_s:
            raise Invalid(
                "max_backoff_s",
                f"{self.max_backoff_s:g} s must be at least {{0}} ({self.restart_backoff_s:g} s)",
                "restart_backoff_s",
            )
        return self


class Database(_Section):
    """How the processes write SQL through database outages (daq.store.durable)."""

    busy_timeout_s: Float = Field(
        30.0,
        gt=0,
        le=3600,
        description="SQLite: longest wait for another writer's lock per attempt (s)",
    )
    retry_interval_s: Float = Field(
        1.0, gt=0, le=600, description="wait between attempts while the database is unavailable"
    )
    memory_writes: Int = Field(
        1000, ge=1, le=1_000_000, description="writes queued in memory before the journal"
    )
    exit_wait_s: Float = Field(
        5.0, ge=0, le=600, description="at exit, wait for queued writes before journaling them"
    )


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
    supervision: Supervision = Field(default_factory=Supervision)
    database: Database = Field(default_factory=Database)

    @model_validator(mode="after")
    def _across_sections(self) -> Config:
        spectrum, detector, sim = self.spectrum, self.detector, self.sim
        top = spectrum.max_keV
        if detector.threshold_keV >= top:
            raise Invalid(
                "detector.threshold_keV",
                f"must be below {{0}} ({top:g}): nothing above threshold would be in the spectrum",
                "spectrum.max_keV",
            )
        lo, hi = self.analysis.window_keV
        if hi > top:
            raise Invalid(
                "analysis.window_keV",
                f"[{lo:g}, {hi:g}] keV must lie inside [0, {{0}}] = [0, {top:g}] keV",
                "spectrum.max_keV",
            )
        width = spectrum.bin_width_keV
        tol = 1e-6 * max(1.0, abs(hi))  # as online.analysis.binning.window_bins
        for edge in (lo, hi):
            if abs(round(edge / width) * width - edge) > tol:
                raise Invalid(
                    "analysis.window_keV",
                    f"edge {edge:g} keV is not a bin edge of the spectrum ({{0}} = {width:g}):"
                    " the analysis would never run",
                    "spectrum.bin_width_keV",
                )
        if sim.continuum_max_keV <= detector.threshold_keV:
            raise Invalid(
                "sim.continuum_max_keV",
                f"must be above {{0}} ({detector.threshold_keV:g})",
                "detector.threshold_keV",
            )
        continuum_hz = sim.flat_cpd * detector.mass_kg * sim.continuum_max_keV / SECONDS_PER_DAY
        lines_hz = sum(x.rate_per_kg_day for x in sim.xray_lines) * detector.mass_kg
        hpge_hz = continuum_hz * (1 + sim.compton_factor + sim.cosmic_factor)
        hpge_hz += lines_hz / SECONDS_PER_DAY
        if hpge_hz > MAX_RATE_HZ:
            raise Invalid(
                "sim.flat_cpd",
                f"the simulated HPGe rate, {{0}} x {{1}} x {{2}} x (1 + {{3}} + {{4}}) / 1 day"
                f" plus {{5}}, is {hpge_hz:.3g} Hz; at most {MAX_RATE_HZ:g} Hz",
                "sim.flat_cpd",
                "detector.mass_kg",
                "sim.continuum_max_keV",
                "sim.compton_factor",
                "sim.cosmic_factor",
                "sim.xray_lines",
            )
        return self

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
    """One line per error, each naming the full dotted key (a model validator's too)."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, Invalid):
            key, msg = cause.described(loc)
        else:
            key = loc or "(top level)"
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
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text file: {err.reason}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {err}"
        ) from None
    return parse_config(data, str(path))
