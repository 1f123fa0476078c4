"""The veto windows around an HPGe pulse, declared once: how far each reaches in time (ns).

An HPGe pulse at t gets the AC tag when an AC pulse lies in [t - ac_window_ns, t +
ac_window_ns] and the CRV tag when a CRV pulse lies in [t - crv_pre_ns, t + crv_post_ns]
(``builder`` section of the configuration). Everything that depends on how far building
reaches calls this module: the event builder's horizon (a veto stream must be complete past
t + after before t is built), the trimming of its buffers (a veto pulse is kept while an
unbuilt HPGe pulse may reach back to it), the tagging itself, and the fast simulation, which
draws veto singles only within the widest reach of an HPGe pulse.
"""

from __future__ import annotations

from dataclasses import dataclass

from daq.core.config import BuilderSettings
from daq.core.records import Stream


@dataclass(frozen=True, slots=True)
class Window:
    """A veto window around an HPGe time t: [t - before_ns, t + after_ns]."""

    before_ns: int
    after_ns: int

    def reached_from(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        """The HPGe times [lo, hi) whose window reaches into the veto time [start_ns, end_ns):
        where a veto's blind time makes the tag unknown."""
        return start_ns - self.after_ns, end_ns + self.before_ns


def veto_windows(settings: BuilderSettings) -> dict[Stream, Window]:
    """The window of each veto stream."""
    return {
        Stream.ACV: Window(settings.ac_window_ns, settings.ac_window_ns),
        Stream.CRV: Window(settings.crv_pre_ns, settings.crv_post_ns),
    }


def max_reach_ns(settings: BuilderSettings) -> int:
    """The widest reach of any window from its HPGe pulse, either way (ns)."""
    return max(max(w.before_ns, w.after_ns) for w in veto_windows(settings).values())
