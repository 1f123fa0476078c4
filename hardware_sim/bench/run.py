"""``nudaq bench``: every figure measured beside its baseline, in one run on this machine.

=============================  ===========================================================
figure                         baseline beside it
=============================  ===========================================================
replay_pulses_per_s            zmq_ceiling_pulses_per_s (raw PUSH/PULL, same message size,
                               ipc; tcp also given); also through the builder (all built,
                               before the final SQL commit) and the whole command (process
                               start-up and the reader's verify pass)
kernel_pulses_per_s            searchsorted_pulses_per_s, merge_asof_pulses_per_s
                               (stress and realistic mixes, results asserted equal)
builder_peak_rss_mb            the same for a replay a tenth as long (flat memory); without
                               --quick also a replay of 10^8 pulses (rate and memory)
live_max_zero_loss_pulses...   the issue's target, 300 000 pulses/s (not with --quick)
long_exposure_s                the issue's targets: generating 4712 h ON + 1250 h OFF in a
                               few minutes, their analysis in seconds (not with --quick)
raw_write_ms_per_s (fsync)     the same without fsync: the raw writer's time per second of
                               300 000 pulses/s, paced, with builder.raw_fsync_interval_s
                               (hardware_sim.bench.fsync); also the slowest tick of each, and
                               the fsyncs' own time in their background thread
soak RSS slope (MB/h), each    the same slope over the first and the second half of the
process of nudaq up --sim      soak: flat, settling or growing (hardware_sim.bench.soak;
                               not with --quick; alone with --only soak)
=============================  ===========================================================
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

from daq.core.errors import NudaqError
from hardware_sim.bench import (
    fsync,
    live,
    long_exposure,
    replay_bench,
    soak,
    tagging,
    zmq_ceiling,
)

LIVE_TARGET = 300_000
FSYNC_SECONDS = {True: 3, False: 10}
"""Seconds of data per round of the fsync comparison (two rounds each), quick or not."""
BENCH_PACKAGES = ("pandas", "psutil")
"""What the benches need beyond nudaq's own dependencies (the ``bench`` extra): the
merge_asof baseline, the soak's memory readings."""


def require_baselines() -> None:
    """NudaqError in one line naming the missing bench packages and how to install them."""
    missing = [name for name in BENCH_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise NudaqError(
            f"the benches need {', '.join(missing)}: install them with "
            "pip install -e '.[bench]' (or pip install 'nudaq[bench]')"
        )


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_benchmarks(
    soak_minutes: float,
    soak_speed: float,
    quick: bool = False,
    only: str | None = None,
    log=_log,
) -> dict:
    """Measure everything (the live ceiling, long exposure and soak only without ``quick``),
    or only the soak (``only="soak"``): ``soak_minutes`` wall minutes of ``nudaq up --sim``
    at ``soak_speed`` times real time; the JSON object."""
    out = {} if only else _throughput(quick, log)
    if only == "soak" or not (only or quick):
        log(f"soak: nudaq up --sim at {soak_speed:g}x for {soak_minutes:g} min ...")
        out["soak"] = soak.soak(soak_minutes * 60, soak_speed, log=log)
    return out


def _throughput(quick: bool, log) -> dict:
    """Every figure but the soak's."""
    out: dict = {}
    log("zmq ceiling (ipc, tcp) ...")
    out["zmq_ceiling_pulses_per_s"] = zmq_ceiling.pushpull_pulses_per_s("ipc")
    out["zmq_ceiling_tcp_pulses_per_s"] = zmq_ceiling.pushpull_pulses_per_s("tcp")
    for name in ("kernel", "searchsorted", "merge_asof"):
        out[f"{name}_pulses_per_s"] = {}
    for mix in tagging.MIXES:
        log(f"tagging, {mix} mix ...")
        for name, rate in tagging.compare(mix).items():
            out[f"{name}_pulses_per_s"][mix] = rate
    work = Path(tempfile.mkdtemp(prefix="nqb", dir="/tmp"))
    try:
        pulses = replay_bench.MIN_PULSES
        log(f"replay of a synthetic run of {pulses:,} pulses ...")
        big = replay_bench.replay_run(work, "long", replay_bench.duration_for(pulses))
        log("replay of a run a tenth as long (memory baseline) ...")
        short = replay_bench.replay_run(work, "short", replay_bench.duration_for(pulses // 10))
        if not quick:
            log(f"replay of a synthetic run of {replay_bench.LONG_PULSES:,} pulses ...")
            duration = replay_bench.duration_for(replay_bench.LONG_PULSES)
            long = replay_bench.replay_run(work, "huge", duration)
            out["replay_long_pulses"] = sum(long["pulses"].values())
            out["replay_long_pulses_per_s"] = long["pulses_per_s"]
            out["builder_peak_rss_mb_long"] = long["builder_peak_rss_mb"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["replay_pulses"] = sum(big["pulses"].values())
    out["replay_pulses_per_s"] = big["pulses_per_s"]
    out["replay_built_pulses_per_s"] = out["replay_pulses"] / big["built_s"]
    out["replay_command_pulses_per_s"] = out["replay_pulses"] / big["command_s"]
    out["builder_peak_rss_mb"] = big["builder_peak_rss_mb"]
    out["builder_peak_rss_mb_tenth"] = short["builder_peak_rss_mb"]
    out["replay_tenth_pulses"] = sum(short["pulses"].values())
    log(f"raw writing at {fsync.RATE_PULSES_PER_S:,} pulses/s, paced, with and without fsync ...")
    out |= fsync.compare(FSYNC_SECONDS[quick])
    if not quick:
        log("live: nudaq up --sim at rising speeds ...")
        result = live.live_max_zero_loss(log=log)
        out["live_max_zero_loss_pulses_per_s"] = result["pulses_per_s"]
        out["live_steps"] = result["steps"]
        log("nudaq sim generate: 4712 h ON + 1250 h OFF ...")
        out["long_exposure_s"] = long_exposure.generate_and_analyse()
    return out


def _m(x: float) -> str:
    return f"{x / 1e6:,.2f} M/s"


def print_table(r: dict) -> None:
    """The figures beside their baselines, as a table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="nudaq bench (pulses per second unless stated)")
    for column in ("figure", "value", "baseline", "ratio"):
        table.add_column(column)
    if "replay_pulses" in r:
        _throughput_rows(table, r)
    if "soak" in r:
        _soak_rows(table, r["soak"])
    Console().print(table)


def _throughput_rows(table, r: dict) -> None:
    """The rows of every figure but the soak's."""
    ceiling = r["zmq_ceiling_pulses_per_s"]
    table.add_row(
        f"replay of {r['replay_pulses']:,} pulses, to the final SQL commit",
        _m(r["replay_pulses_per_s"]),
        f"zmq ipc ceiling {_m(ceiling)}",
        f"{r['replay_pulses_per_s'] / ceiling:.2f}",
    )
    table.add_row(
        "replay, all built (before the final SQL commit)",
        _m(r["replay_built_pulses_per_s"]),
        f"zmq tcp ceiling {_m(r['zmq_ceiling_tcp_pulses_per_s'])}",
        f"{r['replay_built_pulses_per_s'] / ceiling:.2f}",
    )
    table.add_row(
        "replay, whole command (start-up, verify pass)",
        _m(r["replay_command_pulses_per_s"]),
        "",
        "",
    )
    for mix in tagging.MIXES:
        kernel = r["kernel_pulses_per_s"][mix]
        for name in ("searchsorted", "merge_asof"):
            base = r[f"{name}_pulses_per_s"][mix]
            table.add_row(
                f"tagging kernel, {mix}", _m(kernel), f"{name} {_m(base)}", f"{kernel / base:.1f}x"
            )
    tenth = r["builder_peak_rss_mb_tenth"]
    rss_baseline = f"replay of {r['replay_tenth_pulses']:,} pulses: {tenth:.0f}"
    rss = [("builder peak RSS (MB)", r["builder_peak_rss_mb"])]
    if "replay_long_pulses" in r:
        table.add_row(
            f"replay of {r['replay_long_pulses']:,} pulses, to the final SQL commit",
            _m(r["replay_long_pulses_per_s"]),
            f"zmq ipc ceiling {_m(ceiling)}",
            f"{r['replay_long_pulses_per_s'] / ceiling:.2f}",
        )
        label = f"builder peak RSS (MB), {r['replay_long_pulses']:,} pulses"
        rss.append((label, r["builder_peak_rss_mb_long"]))
    for label, mb in rss:
        table.add_row(label, f"{mb:.0f}", rss_baseline, f"{mb / tenth:.2f}")
    if "raw_write_ms_per_s" in r:
        _fsync_rows(table, r)
    if "live_max_zero_loss_pulses_per_s" in r:
        live_rate = r["live_max_zero_loss_pulses_per_s"]
        table.add_row(
            "live, zero loss for 60 s",
            f"{live_rate:,.0f}",
            f"target {LIVE_TARGET:,}",
            f"{live_rate / LIVE_TARGET:.2f}",
        )
    if "long_exposure_s" in r:
        times = r["long_exposure_s"]
        took = times["on"] + times["off"]
        hours = " + ".join(f"{h:g} h {s.upper()}" for s, h in long_exposure.HOURS.items())
        table.add_row(
            f"sim generate {hours} (s)",
            f"{took:.1f}",
            f"target {long_exposure.GENERATE_TARGET_S:.0f} s",
            f"{took / long_exposure.GENERATE_TARGET_S:.2f}",
        )
        table.add_row(
            f"nudaq analysis of those {times['runs']} runs (s)",
            f"{times['analysis']:.1f}",
            f"target {long_exposure.ANALYSIS_TARGET_S:.0f} s",
            f"{times['analysis'] / long_exposure.ANALYSIS_TARGET_S:.2f}",
        )


def _fsync_rows(table, r: dict) -> None:
    """The raw writer's cost with the fsync policy, beside the same writing without fsync."""
    rate = f"{r['raw_write_pulses_per_s']:,} pulses/s"
    policy = f"fsync every {r['raw_fsync_interval_s']:g} s"
    for label, key in (
        (f"raw writing, {rate} paced, {policy} (ms per s of data)", "raw_write_ms_per_s"),
        ("raw writing, slowest tick (ms)", "raw_write_worst_tick_ms"),
    ):
        value, base = r[key]["fsync"], r[key]["no_fsync"]
        ratio = f"{value / base:.2f}" if base > 0 else ""
        table.add_row(label, f"{value:.2f}", f"no fsync {base:.2f}", ratio)
    table.add_row(
        f"raw fsyncs in the background ({r['raw_fsyncs']}, ms per s of data)",
        f"{r['raw_fsync_ms_per_s']:.2f}",
        "",
        "",
    )


def _slope(s: dict) -> str:
    return f"{s['mb_per_h']:+.2f} ± {s['se_mb_per_h']:.2f}"


def _soak_rows(table, s: dict) -> None:
    """The soak's length, speed and load, then each process's RSS slope beside its halves'."""
    restarts = ", ".join(f"{n} {k}" for n, k in s["restarts"].items() if k)
    table.add_row(
        f"soak, nudaq up --sim at {s['speed']:g}x real time (wall min)",
        f"{s['seconds'] / 60:.1f}",
        f"{s['pulses']:,} pulses, {s['lost']:,} lost; {s['live_analyses']} live analyses, "
        f"{len(s['alarms'])} alarms, {s['web']['requests']} web requests "
        f"({s['web']['errors']} failed)" + (f"; restarts: {restarts}" if restarts else ""),
        "",
    )
    for name, p in s["processes"].items():
        table.add_row(
            f"soak RSS slope (MB/h), {name}, {p['rss_warm_mb']:.0f} MB at warm-up",
            _slope(p["slope"]),
            f"halves {_slope(p['first_half'])}, {_slope(p['second_half'])}",
            p["verdict"],
        )
