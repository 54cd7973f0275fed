"""Drug models: priors and facts for one drug, read from ``models/<drug>.toml``.

Each drug file declares its priors as distributions with parameters (see ``models/README.md``);
any prior it leaves out is taken from ``models/default.toml``. The merged model records, for each
prior, the file it came from, so a fit can say exactly what it assumed.
"""

from __future__ import annotations

import math
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dialyzability.io.resources import models_dir
from dialyzability.io.units import UnitError, parse_quantity

PriorName = Literal["volume", "cl_total", "fe", "bioavailability", "ka"]


class DrugModelError(ValueError):
    """A drug model that does not exist or cannot be read."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogNormal(_Strict):
    """Log-normal prior: ``log X ~ Normal(log(median), sigma)``.

    ``published`` lists values reported in the sources (with units, e.g. ``"128 mL/min"``) that
    the prior's central 95 % interval must cover; the drug models' prior-predictive tests check it.
    """

    dist: Literal["lognormal"]
    median: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    sigma: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    unit: str | None = None
    source: str
    note: str | None = None
    published: list[str] | None = None
    origin: str = "drug"

    @property
    def mu(self) -> float:
        """Mean of the log."""
        return math.log(self.median)

    def interval(self, prob: float = 0.95) -> tuple[float, float]:
        """Central interval of probability ``prob``."""
        from statistics import NormalDist

        z = NormalDist().inv_cdf(0.5 + prob / 2)
        return self.median * math.exp(-z * self.sigma), self.median * math.exp(z * self.sigma)

    def describe(self) -> str:
        lo, hi = self.interval()
        unit = f" {self.unit}" if self.unit else ""
        return (
            f"lognormal(median {self.median:g}{unit}, sigma {self.sigma:g}); "
            f"95 % {lo:.3g}-{hi:.3g}{unit}"
        )


class Beta(_Strict):
    """Beta prior on a fraction."""

    dist: Literal["beta"]
    alpha: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    beta: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    unit: str | None = None
    source: str
    note: str | None = None
    origin: str = "drug"

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def describe(self) -> str:
        return f"beta(alpha {self.alpha:g}, beta {self.beta:g}); mean {self.mean:.2f}"


Prior = Annotated[LogNormal | Beta, Field(discriminator="dist")]


class Sourced(_Strict):
    """A fact with its source; ``value`` is a number, a quantity with units ("213.66 g/mol") or a
    range ``[low, high]`` where sources disagree."""

    value: float | str | tuple[float, float]
    source: str


class Extrip(_Strict):
    """The EXTRIP workgroup's published grading of the drug.

    ``dialyzability`` is EXTRIP's category (Lavergne V et al. Guidelines for reporting case
    studies on extracorporeal treatments in poisonings: methodology. Semin Dial
    2014;27(4):407-414, doi:10.1111/sdi.12251): dialyzable (D), moderately (M), slightly (S) or
    not dialyzable (N); ``evidence`` its level of evidence (A-D); ``recommendation`` the
    recommendation for ECTR in severe poisoning as published (e.g. "recommended (1D)").
    """

    dialyzability: (
        Literal["dialyzable", "moderately dialyzable", "slightly dialyzable", "not dialyzable"]
        | None
    ) = None
    evidence: Literal["A", "B", "C", "D"] | None = None
    recommendation: str | None = None
    source: str


class TherapeuticRange(_Strict):
    low: str
    high: str
    source: str


class HalfLife(_Strict):
    therapeutic: list[str] | None = None
    overdose: list[str] | None = None
    source: str


class Priors(_Strict):
    volume: LogNormal
    cl_total: LogNormal
    fe: Beta
    bioavailability: Beta
    ka: LogNormal


class DrugModel(_Strict):
    """A drug model merged with the defaults.

    Attributes
    ----------
    name
        Drug name, the file's stem.
    molar_mass
        g/mol, or None if not given (molar units then cannot be read).
    therapeutic_high, therapeutic_low
        Therapeutic range in mg/L, when given.
    toxic_level
        Level above which toxicity is expected (mg/L), when given.
    blood_plasma_ratio
        Whole-blood to plasma concentration ratio as (low, high); equal ends for a single value.
    extrip
        The EXTRIP workgroup's published grading, when the drug has been graded.
    overdose_kinetics
        How overdose changes the kinetics (saturable absorption or binding), with sources.
    not_found
        Facts searched for and not found: field name to what was searched.
    priors
        Priors of the pharmacokinetic parameters (``volume`` per kg, ``cl_total`` for a 70-kg
        adult with normal kidneys, ``fe``, ``bioavailability``, ``ka``).
    ectr
        Prior of the extracorporeal clearance per modality (L/h).
    kidney_function
        Multiplier of renal clearance per kidney-function class.
    errors
        Priors of the measurement-error scales (SD of log) for levels, urine and effluent.
    weight
        Prior of body weight when the case gives none (kg).
    """

    name: str
    description: str = ""
    molar_mass: float | None = None
    protein_binding: float | None = None
    therapeutic_low: float | None = None
    therapeutic_high: float | None = None
    half_life: HalfLife | None = None
    toxic_level: float | None = None
    blood_plasma_ratio: tuple[float, float] | None = None
    extrip: Extrip | None = None
    overdose_kinetics: str | None = None
    not_found: dict[str, str] = Field(default_factory=dict)
    sources: dict[str, str] = Field(default_factory=dict)
    priors: Priors
    ectr: dict[str, LogNormal]
    kidney_function: dict[str, LogNormal]
    errors: dict[str, LogNormal]
    weight: LogNormal
    path: str

    def prior_table(self) -> list[tuple[str, str, str]]:
        """(name, description, source) of every prior, for reports and attributes."""
        rows = []
        for name in Priors.model_fields:
            prior = getattr(self.priors, name)
            rows.append((name, prior.describe(), f"[{prior.origin}] {prior.source}"))
        for group in ("ectr", "kidney_function", "errors"):
            for key, prior in getattr(self, group).items():
                rows.append(
                    (f"{group}.{key}", prior.describe(), f"[{prior.origin}] {prior.source}")
                )
        rows.append(
            ("weight", self.weight.describe(), f"[{self.weight.origin}] {self.weight.source}")
        )
        return rows


class _DrugFile(_Strict):
    name: str
    description: str = ""
    molar_mass: Sourced | None = None
    protein_binding: Sourced | None = None
    therapeutic_range: TherapeuticRange | None = None
    half_life: HalfLife | None = None
    toxic_threshold: Sourced | None = None
    blood_plasma_ratio: Sourced | None = None
    extrip: Extrip | None = None
    overdose_kinetics: str | None = None
    not_found: dict[str, str] = Field(default_factory=dict)
    priors: dict[PriorName, Prior] = Field(default_factory=dict)
    ectr: dict[str, LogNormal] = Field(default_factory=dict)
    kidney_function: dict[Literal["normal", "impaired", "anuric"], LogNormal] = Field(
        default_factory=dict
    )
    errors: dict[Literal["level", "urine", "effluent"], LogNormal] = Field(default_factory=dict)
    weight: LogNormal | None = None


def available_drugs(folder: Path | None = None) -> list[str]:
    """Names of the drugs that have a model file."""
    folder = folder or models_dir()
    return sorted(p.stem for p in folder.glob("*.toml") if p.stem != "default")


def _read(path: Path) -> _DrugFile:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
        return _DrugFile.model_validate(raw)
    except tomllib.TOMLDecodeError as exc:
        raise DrugModelError(f"{path}: invalid TOML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DrugModelError(f"{path}: field '{where}': {first['msg']}") from exc


@cache
def load_drug(name: str, folder: str | None = None) -> DrugModel:
    """Load the drug model ``name`` merged with ``default.toml``.

    Parameters
    ----------
    name
        A drug with a file in ``models/`` (case-insensitive), or ``"default"``.
    folder
        Folder of the model files; the shipped ``models/`` by default.

    Raises
    ------
    DrugModelError
        If there is no such drug, or its file is malformed.
    """
    base = Path(folder) if folder else models_dir()
    default = _read(base / "default.toml")
    key = name.strip().lower()
    if key == "default":
        drug = default
        origin = "default"
    else:
        path = base / f"{key}.toml"
        if not path.is_file():
            known = ", ".join(available_drugs(base)) or "none"
            raise DrugModelError(
                f"unknown drug {name!r}: no model file {path.name} (known drugs: {known}; "
                'use drug = "default" for weakly informative priors)'
            )
        drug = _read(path)
        origin = path.name

    def tag(prior, where):
        return prior.model_copy(update={"origin": where})

    priors = {k: tag(v, "default.toml") for k, v in default.priors.items()}
    priors |= {k: tag(v, origin) for k, v in drug.priors.items()}
    merged = {}
    for group in ("ectr", "kidney_function", "errors"):
        merged[group] = {k: tag(v, "default.toml") for k, v in getattr(default, group).items()}
        merged[group] |= {k: tag(v, origin) for k, v in getattr(drug, group).items()}
    weight = tag(drug.weight, origin) if drug.weight else tag(default.weight, "default.toml")

    sources: dict[str, str] = {}
    molar_mass = None
    if drug.molar_mass is not None:
        try:
            molar_mass = parse_quantity(str(drug.molar_mass.value), "molar_mass")
        except UnitError as exc:
            raise DrugModelError(f"{origin}: field 'molar_mass.value': {exc}") from exc
        sources["molar_mass"] = drug.molar_mass.source
    low = high = None
    if drug.therapeutic_range is not None:
        tr = drug.therapeutic_range
        try:
            low = parse_quantity(tr.low, "concentration", molar_mass)
            high = parse_quantity(tr.high, "concentration", molar_mass)
        except UnitError as exc:
            raise DrugModelError(f"{origin}: field 'therapeutic_range': {exc}") from exc
        sources["therapeutic_range"] = tr.source
    binding = None
    if drug.protein_binding is not None:
        binding = _fraction(drug.protein_binding.value, origin, "protein_binding")
        sources["protein_binding"] = drug.protein_binding.source
    toxic = None
    if drug.toxic_threshold is not None:
        try:
            toxic = parse_quantity(str(drug.toxic_threshold.value), "concentration", molar_mass)
        except UnitError as exc:
            raise DrugModelError(f"{origin}: field 'toxic_threshold.value': {exc}") from exc
        sources["toxic_threshold"] = drug.toxic_threshold.source
    bp = None
    if drug.blood_plasma_ratio is not None:
        value = drug.blood_plasma_ratio.value
        if isinstance(value, str):
            raise DrugModelError(
                f"{origin}: field 'blood_plasma_ratio.value': give a number or [low, high]"
            )
        bp = tuple(value) if isinstance(value, tuple) else (float(value), float(value))
        if not 0 < bp[0] <= bp[1]:
            raise DrugModelError(
                f"{origin}: field 'blood_plasma_ratio.value': need 0 < low <= high"
            )
        sources["blood_plasma_ratio"] = drug.blood_plasma_ratio.source
    try:
        return DrugModel(
            name=drug.name if key != "default" else "default",
            description=drug.description,
            molar_mass=molar_mass,
            protein_binding=binding,
            therapeutic_low=low,
            therapeutic_high=high,
            half_life=drug.half_life,
            toxic_level=toxic,
            blood_plasma_ratio=bp,
            extrip=drug.extrip,
            overdose_kinetics=drug.overdose_kinetics,
            not_found=drug.not_found,
            sources=sources,
            priors=Priors(**priors),
            ectr=merged["ectr"],
            kidney_function=merged["kidney_function"],
            errors=merged["errors"],
            weight=weight,
            path=str(base / f"{key}.toml"),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DrugModelError(f"{origin}: field '{where}': {first['msg']}") from exc


def _fraction(value, origin: str, field: str) -> float:
    """A fraction given as a number, or the midpoint of a range [low, high]."""
    if isinstance(value, str):
        raise DrugModelError(f"{origin}: field '{field}.value': give a number or [low, high]")
    lo, hi = value if isinstance(value, tuple) else (value, value)
    if not 0 <= lo <= hi <= 1:
        raise DrugModelError(f"{origin}: field '{field}.value': need 0 <= low <= high <= 1")
    return (lo + hi) / 2


def error_prior(prior) -> tuple[float, float]:
    """Degrees of freedom ν and scale s of the error model matching a log-normal prior on σ.

    Each kind of observation (levels, urine, effluent) has log-normal errors of SD σ on the log
    scale, with σ shared by the observations of that kind. With σ² ~ InvGamma(ν/2, ν s²/2), σ
    integrates out in closed form (a multivariate Student-t, see :func:`log_marginal_t`), which
    removes the funnel between σ and the parameters that a single observation creates. ν and s
    are chosen so that log σ has the mean and SD of the drug model's log-normal prior:

        Var log σ = ψ'(ν/2) / 4 = sigma²,   E log σ = (log(ν s²/2) − ψ(ν/2)) / 2 = log(median)

    (Gelman A et al. Bayesian Data Analysis, 3rd ed., 2013, §14.8 and appendix A).
    """
    from scipy.optimize import brentq
    from scipy.special import digamma, polygamma

    half = brentq(lambda a: polygamma(1, a) / 4 - prior.sigma**2, 1e-3, 1e6)
    nu = 2 * half
    scale = math.sqrt(2 * prior.median**2 * math.exp(digamma(half)) / nu)
    return nu, scale


def clearance_prior(drug: DrugModel, kidney_function: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and Cholesky factor of the prior of (log cl_renal, log cl_nonrenal), 70-kg adult.

    With cl_renal = fe · CL · K and cl_nonrenal = (1 − fe) · CL, where CL is log-normal
    (``cl_total``), K log-normal (``kidney_function``) and fe ~ Beta(α, β), the logs are sums
    of independent terms whose moments are exact (Johnson NL, Kotz S, Balakrishnan N. Continuous
    Univariate Distributions, vol. 2, 2nd ed., 1995, ch. 25):

        E log fe = ψ(α) − ψ(α + β),      Var log fe = ψ'(α) − ψ'(α + β)
        E log(1 − fe) = ψ(β) − ψ(α + β), Var log(1 − fe) = ψ'(β) − ψ'(α + β)
        Cov(log fe, log(1 − fe)) = −ψ'(α + β)

    The model samples the two logs as a bivariate normal with these moments: two well-identified
    parameters instead of three (fe, CL, K) of which the data see only two products.
    """
    from scipy.special import digamma, polygamma

    a, b = drug.priors.fe.alpha, drug.priors.fe.beta
    cl, kf = drug.priors.cl_total, drug.kidney_function[kidney_function]
    m_fe = digamma(a) - digamma(a + b)
    m_nfe = digamma(b) - digamma(a + b)
    v_fe = polygamma(1, a) - polygamma(1, a + b)
    v_nfe = polygamma(1, b) - polygamma(1, a + b)
    cov_fe = -polygamma(1, a + b)
    mean = np.array([cl.mu + m_fe + kf.mu, cl.mu + m_nfe])
    cov = np.array(
        [
            [cl.sigma**2 + v_fe + kf.sigma**2, cl.sigma**2 + cov_fe],
            [cl.sigma**2 + cov_fe, cl.sigma**2 + v_nfe],
        ]
    )
    return mean, np.linalg.cholesky(cov)
