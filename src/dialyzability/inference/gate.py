"""The convergence gate applied to every fit (R-hat, bulk ESS, divergences)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from dialyzability.design import RAW

#: convergence thresholds (Vehtari A et al., Bayesian Analysis 2021;16:667-718)
RHAT_MAX = 1.01
ESS_BULK_MIN = 400


@dataclass(frozen=True)
class Diagnostics:
    r_hat_max: float
    ess_bulk_min: float
    divergences: int
    worst: str = ""

    @property
    def converged(self) -> bool:
        return (
            self.r_hat_max <= RHAT_MAX
            and self.ess_bulk_min >= ESS_BULK_MIN
            and self.divergences == 0
        )

    def to_json(self) -> dict:
        return {
            "r_hat_max": self.r_hat_max,
            "ess_bulk_min": self.ess_bulk_min,
            "divergences": self.divergences,
            "converged": self.converged,
        }

    def sentence(self) -> str:
        state = "converged" if self.converged else "NOT CONVERGED"
        return (
            f"R-hat max {self.r_hat_max:.3f} (<= {RHAT_MAX}), bulk ESS min "
            f"{self.ess_bulk_min:.0f} (>= {ESS_BULK_MIN}), divergences {self.divergences} "
            f"(= 0): {state}"
        )


def diagnose(posterior, sample_stats, skip=()) -> Diagnostics:
    """The convergence gate over every reported variable of a posterior: not the sampler's own
    coordinates, not the variables in ``skip``, nor variables constant over draws (their
    R-hat is undefined)."""
    import arviz as az

    names = [v for v in posterior.data_vars if not v.endswith(RAW) and v not in skip]
    ds = posterior[names]
    with warnings.catch_warnings():  # variables constant over draws give NaN, skipped below
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat, ess = az.rhat(ds), az.ess(ds, method="bulk")
    r = {k: float(np.nanmax(rhat[k].values, initial=-np.inf)) for k in names}
    e = {k: float(np.nanmin(ess[k].values, initial=np.inf)) for k in names}
    r = {k: v for k, v in r.items() if np.isfinite(v)}
    e = {k: v for k, v in e.items() if np.isfinite(v)}
    worst = max(r, key=lambda k: r[k]) if r else ""
    return Diagnostics(
        max(r.values(), default=float("nan")),
        min(e.values(), default=float("nan")),
        int(sample_stats["diverging"].sum()),
        worst,
    )
