"""Units and limits of the DAQ clock: integer nanoseconds, and the day of exposures.

Times on the common clock are integer ns (so sums of exposure are exact); exposures are
quoted in kg day, rates in cpd (counts per kg keV day).
"""

from __future__ import annotations

NS_PER_S = 10**9
SECONDS_PER_DAY = 86400.0
NS_PER_DAY = NS_PER_S * 86400
INF_NS = 2**62
"""Beyond any clock value: the watermark of an ended stream. -INF_NS is before any: the
state of a stream that has delivered nothing yet."""
