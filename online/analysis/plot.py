"""The analysis figure: ON and OFF spectra, their residual with the fitted and the
90 % CL magnetic-moment curves, and the numbers (matplotlib, Agg; PNG or PDF)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from daq.core.errors import AnalysisError
from online.analysis.onoff import AnalysisResult

FORMATS = (".png", ".pdf")


def plot_analysis(result: AnalysisResult, path: str | Path) -> Path:
    """Write the figure of ``result`` to ``path`` (format from the extension)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise AnalysisError(f"plot file {path}: extension must be one of {', '.join(FORMATS)}")
    edges = result.fit_edges_keV
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 8), sharex=True, gridspec_kw={"height_ratios": [1, 1]}
    )
    for rate, err, label, colour in (
        (result.rate_on, result.error_on, "reactor ON", "tab:red"),
        (result.rate_off, result.error_off, "reactor OFF", "tab:blue"),
    ):
        top.errorbar(centres, rate, err, fmt="o", ms=3, color=colour, label=label)
    top.set_ylabel("candidates (counts / kg keV day)")
    top.legend()
    resid = result.rate_on - result.rate_off
    resid_err = np.hypot(result.error_on, result.error_off)
    bottom.errorbar(centres, resid, resid_err, fmt="o", ms=3, color="k", label="ON - OFF")
    fine = np.linspace(edges[0], edges[-1], 400)
    shape = np.interp(fine, centres, result.signal)
    fit = result.limit.fit
    bottom.plot(fine, fit.mu_nu2 * shape, color="tab:green", label="best fit")
    bottom.plot(fine, result.limit.limit_mu_nu2 * shape, "--", color="tab:orange", label="90% CL")
    bottom.axhline(0, color="grey", lw=0.5)
    bottom.set_xlabel("energy (keV)")
    bottom.set_ylabel("residual (counts / kg keV day)")
    bottom.legend(loc="upper right")
    out = result.to_json()
    text = "\n".join(
        [
            f"exposure ON/OFF: {out['exposure_kg_day']['on']:.1f} / "
            f"{out['exposure_kg_day']['off']:.1f} kg day",
            f"background: {result.background.value:.3f} +- {result.background.error:.3f} cpd",
            f"mu_nu^2 = {fit.mu_nu2:.2f} +- {fit.error:.2f} x 1e-20 mu_B^2",
            f"mu_nu < {result.limit.limit_muB:.3g} mu_B (90% CL, FC)",
            f"expected: < {result.limit.expected_limit_muB:.3g} mu_B",
            f"live fraction: {out['live_fraction']:.4f}",
            f"accidental veto: AC {out['accidental_veto']['ac']:.4f}, "
            f"CRV {out['accidental_veto']['crv']:.4f}",
        ]
    )
    fig.text(0.71, 0.5, text, ha="left", va="center", fontsize=9, family="monospace")
    top.set_title(f"nudaq analysis, {edges[0]:g}-{edges[-1]:g} keV")
    fig.tight_layout(rect=(0, 0, 0.7, 1))
    try:
        fig.savefig(path)
    except OSError as err:
        raise AnalysisError(f"cannot write plot {path}: {err.strerror}") from None
    finally:
        plt.close(fig)
    return path
