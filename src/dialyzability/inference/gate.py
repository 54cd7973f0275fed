"""The convergence gate applied to every fit (R-hat, bulk ESS, divergences)."""

from __future__ import annotations

from dataclasses import dataclass

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
