"""Fixtures of the simulated-hardware tests: running crates and serial hosts, torn down."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim_host import Host

from daq.core.config import Config
from hardware_sim.crate import SimCrate


@pytest.fixture
def make_crate(tmp_path: Path):
    """Factory: a started in-process crate on a configuration (``record``: keeping the devices'
    in-memory ground truth); closed after the test."""
    crates: list[SimCrate] = []

    def make(config: Config, record: bool = False) -> SimCrate:
        crate = SimCrate(config, tmp_path / f"crate{len(crates)}", record=record).start()
        crates.append(crate)
        return crate

    yield make
    for crate in crates:
        crate.close()


@pytest.fixture
def host_factory():
    """Factory of Hosts, all closed after the test."""
    hosts: list[Host] = []

    def make(url: str) -> Host:
        host = Host(url)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close()
