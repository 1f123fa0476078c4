"""Long simulated exposures: ``nudaq sim generate`` and hardware_sim.fastsim into SQL.

The random-trigger live fraction over a long exposure against the dead time the builder
counted (the RT estimate must equal 1 - dead fraction within its Poisson error, run by run
and in total), the runs and exposures the command stores and prints, the speed, and clear
errors for invalid input.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import func, select

from daq.cli import main
from daq.core.config import Config, parse_config
from daq.store.models import Exposure, Run, SpectrumBin
from daq.store.session import make_engine, session_scope, upgrade_database
from daq.store.spectra import select_runs
from hardware_sim.fastsim import generate_runs
from online.analysis.inputs import state_inputs

DAY_S = 86400.0


def sqlite_engine(path):
    engine = make_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    return engine


def dead_config() -> Config:
    """Random triggers at 10 Hz and a 2 ms ADC dead time: ~2 % dead, 36 000 RT per hour."""
    config = Config()
    config.sim.rt_rate_hz = config.frontends.hpge.rt_rate_hz = 10.0
    config.sim.adc_dead_time_ns = 2_000_000
    return config


def test_rt_live_fraction_equals_one_minus_dead_fraction(tmp_path):
    config = dead_config()
    engine = sqlite_engine(tmp_path / "db.sqlite")
    runs = generate_runs(engine, config, hours=24, power_MW=2900.0, run_hours=2)
    assert len(runs) == 12
    with session_scope(engine, readonly=True) as session:
        rows = session.execute(
            select(Exposure.elapsed_ns, Exposure.dead_ns, Exposure.rt_events).order_by(
                Exposure.run_id
            )
        ).all()
        on = state_inputs(session, select_runs(session))["on"]
    elapsed, dead, rt = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    assert np.all(elapsed == 2 * 3600e9)
    assert np.all((dead / elapsed > 0.015) & (dead / elapsed < 0.03))
    expected = config.frontends.hpge.rt_rate_hz * elapsed * 1e-9
    pulls = (rt / expected - (1 - dead / elapsed)) / (np.sqrt(rt) / expected)
    assert abs(pulls.mean()) < 4 / np.sqrt(len(pulls))
    assert 0.4 < pulls.std() < 1.7  # the quoted error is the right size
    live = on.efficiencies("reactor ON").live_fraction
    assert live.error == pytest.approx(1 / np.sqrt(on.rt_expected), rel=0.02)
    assert live.value == pytest.approx(1 - dead.sum() / elapsed.sum(), abs=4 * live.error)


def test_same_seed_same_runs(tmp_path):
    stored = []
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        engine = sqlite_engine(tmp_path / f"{name}.sqlite")
        generate_runs(engine, Config(), 30, 2900.0, run_hours=6, seed=seed)
        with session_scope(engine, readonly=True) as session:
            stored.append(
                session.execute(
                    select(
                        SpectrumBin.run_id,
                        SpectrumBin.category,
                        SpectrumBin.bin,
                        SpectrumBin.counts,
                    ).order_by(SpectrumBin.run_id, SpectrumBin.category, SpectrumBin.bin)
                ).all()
            )
        engine.dispose()
    assert stored[0] == stored[1] and len(stored[0]) > 1000
    assert stored[0] != stored[2]


def test_ten_days_are_ten_daily_runs(tmp_path):
    """240 h become ten 24-h runs back to back (how long it takes: ``nudaq bench``)."""
    engine = sqlite_engine(tmp_path / "db.sqlite")
    runs = generate_runs(engine, Config(), hours=240, power_MW=2900.0)
    assert [r.number for r in runs] == list(range(1, 11))
    with session_scope(engine, readonly=True) as session:
        elapsed = session.scalar(select(func.sum(Exposure.elapsed_ns)).where(Exposure.tag == ""))
    assert elapsed == 240 * 3600 * 10**9


def test_nudaq_sim_generate_stores_and_prints_the_runs(db_url, capsys):
    args = ["sim", "generate", "--hours", "50", "--reactor", "off", "--db", db_url]
    assert main([*args, "--mu-nu", "3e-10", "--seed", "9", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in out["runs"]] == [1, 2, 3]
    assert [r["elapsed_s"] for r in out["runs"]] == [86400.0, 86400.0, 7200.0]
    mass = Config().detector.mass_kg
    for r in out["runs"]:
        assert r["reactor"] == "off" and r["power_MW"] == 0.0
        assert 0.999 * r["elapsed_s"] < r["live_s"] < r["elapsed_s"]
        assert r["exposure_kg_day"] == pytest.approx(mass * r["live_s"] / DAY_S)
    assert out["total"]["exposure_kg_day"] == pytest.approx(mass * 50 / 24, rel=1e-3)
    assert main(["sim", "generate", "--hours", "1", "--reactor", "on", "--db", db_url]) == 0
    assert "runs 4-4 (1): 1 h reactor ON" in capsys.readouterr().out
    engine = make_engine(db_url)
    with session_scope(engine, readonly=True) as session:
        runs = session.scalars(select(Run).order_by(Run.number)).all()
        assert [r.state for r in runs] == ["ended"] * 4
        assert all(r.simulated and r.raw_file is None for r in runs)
        assert "no raw files" in runs[0].comment
        snapshot = parse_config(json.loads(runs[0].config_json))
        assert snapshot.sim.mu_nu_1e10 == pytest.approx(3.0) and snapshot.sim.seed == 9
        assert [p.power_MW for p in snapshot.sim.reactor] == [0.0]
        assert session.scalar(select(func.sum(Exposure.elapsed_ns))) == 51 * 3600 * 10**9
    engine.dispose()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--hours", "-5", "--reactor", "on"], "--hours: must be at least 1 s"),
        (["--hours", "abc", "--reactor", "on"], "not a number of hours"),
        (["--hours", "5", "--reactor", "sideways"], "invalid choice: 'sideways'"),
        (["--hours", "5", "--reactor", "on", "--mu-nu", "2"], "--mu-nu: must be a magnetic"),
        (["--hours", "5", "--reactor", "on", "--mu-nu=-1e-10"], "--mu-nu: must be a magn"),
        (["--hours", "5", "--reactor", "on", "--run-hours", "0"], "--run-hours: must be at"),
        (["--hours", "5"], "the following arguments are required: --reactor"),
    ],
)
def test_invalid_input_is_a_clear_error(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "generate", *args, "--db", f"sqlite:///{tmp_path / 'x.sqlite'}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.sqlite").exists()


def test_bad_configuration_file_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("[sim]\nflat_cpd = -1\n")
    code = main(["sim", "generate", "--hours", "1", "--reactor", "on", "--config", str(config)])
    assert code == 2
    err = capsys.readouterr().err
    assert "sim.flat_cpd" in err and "Traceback" not in err
