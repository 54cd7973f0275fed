"""Drug models: priors and facts for one drug, read from ``models/<drug>.toml``.

Each drug file declares its priors as distributions with parameters (see ``models/README.md``);
any prior it leaves out is taken from ``models/default.toml``. The merged model records, for each
prior, the file it came from, so a fit can say exactly what it assumed.

A user folder of drug models (``--models-dir``, or ``$DIALYZABILITY_MODELS``; see
:mod:`dialyzability.io.resources`) is searched first: a file there adds a drug, or replaces the
shipped file of the same name (the model records which, :attr:`DrugModel.overrides`); a user
``default.toml`` replaces the shipped defaults, and without one the shipped defaults apply.
:func:`drug_file` is the one place where this order is decided.
"""

from __future__ import annotations

import math
import re
import textwrap
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dialyzability.io.resources import MODELS_ENV, models_dir, user_models_dir
from dialyzability.io.units import UnitError, parse_quantity

PriorName = Literal[
    "volume",
    "cl_total",
    "fe",
    "bioavailability",
    "ka",
    "blood_plasma_ratio",
    "fraction_peripheral",
    "cl_intercompartmental",
    "lag",
    "ka_slow",
    "fraction_slow",
]
#: the dispositions and absorptions a drug file's ``[structure]`` may name (the structural
#: model itself is :class:`dialyzability.pk.structure.Structure`)
Disposition = Literal["one-compartment", "two-compartment"]
Absorption = Literal["first-order", "lag", "dual"]
#: widening (log scale) of a cited blood-to-plasma range at each end, for its prior
#: (:func:`blood_plasma_prior`)
BLOOD_PLASMA_MARGIN = 0.2


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
    #: whole-blood to plasma concentration ratio B:P, used only for levels in whole blood
    blood_plasma_ratio: LogNormal
    #: two compartments: V2 / Vss, the peripheral share of the steady-state volume ``volume``
    fraction_peripheral: Beta
    #: two compartments: intercompartmental clearance Q of a 70-kg adult (L/h)
    cl_intercompartmental: LogNormal
    #: absorption with a lag: the lag time of an oral dose (h)
    lag: LogNormal
    #: dual absorption: the slow route's rate (1/h) and the fraction of a dose it carries
    ka_slow: LogNormal
    fraction_slow: Beta


class StructureChoice(_Strict):
    """A drug's default structural model (``[structure]`` of its file), with its reason."""

    disposition: Disposition = "one-compartment"
    absorption: Absorption = "first-order"
    source: str = "default: one compartment with first-order absorption"


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
    structure
        The default structural model of a fit (disposition and absorption) and why.
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
        Priors of the measurement-error scales (SD of log) for levels, urine, effluent totals
        and effluent samples.
    weight
        Prior of body weight when the case gives none (kg).
    path
        The drug's model file.
    user
        Whether that file is in the user's folder of drug models.
    overrides
        The shipped file that a user file of the same name replaces, if any.
    defaults
        The user's ``default.toml`` that replaced the shipped defaults, if any.
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
    structure: StructureChoice = StructureChoice()
    priors: Priors
    ectr: dict[str, LogNormal]
    kidney_function: dict[str, LogNormal]
    errors: dict[str, LogNormal]
    weight: LogNormal
    path: str
    user: bool = False
    overrides: str | None = None
    defaults: str | None = None

    @classmethod
    def from_saved(cls, text: str) -> DrugModel:
        """The drug model a fit saved (its JSON). A fit saved before a prior existed (the
        structures' priors) gets that prior from the shipped ``default.toml``, tagged as such:
        its fit did not use it, and its structure is one compartment with first-order
        absorption."""
        import json

        saved = json.loads(text)
        missing = [name for name in Priors.model_fields if name not in saved["priors"]]
        if missing:
            default = load_drug("default").priors
            for name in missing:
                prior = getattr(default, name).model_copy(update={"origin": "default.toml"})
                saved["priors"][name] = prior.model_dump()
        return cls.model_validate(saved)

    def provenance(self) -> str:
        """Which file the model came from, e.g. "drug model: /path/x.toml (overrides the shipped
        x.toml)"; for a user file also the defaults it was merged with."""
        if not self.user and self.defaults is None:
            return f"drug model: the shipped {Path(self.path).name}"
        what = f"drug model: {self.path}"
        if self.overrides:
            what += f" (overrides the shipped {Path(self.overrides).name})"
        elif self.user:
            what += " (a user file)"
        if self.defaults:
            what += f"; defaults: {self.defaults}"
        return what

    def prior_half_life(
        self,
        prob: float = 0.95,
        n: int = 20_000,
        seed: int = 0,
        weight: float = 70.0,
        kidney_function: str = "normal",
    ) -> tuple[float, float]:
        """Central interval of probability ``prob`` of the prior half-life (h), by Monte Carlo.

        For a patient of ``weight`` kg (a 70-kg adult by default) with kidneys of class
        ``kidney_function``, from ``n`` seeded draws of the priors:

            t½ = ln 2 · V / (CL_R + CL_NR),  V = volume · weight,
            CL_R = fe · CL · K,  CL_NR = (1 − fe) · CL,  CL = cl_total · (weight / 70)^0.75

        with ``cl_total`` and the kidney factor K log-normal and fe Beta.
        """
        rng = np.random.default_rng(seed)
        p = self.priors
        kf = self.kidney_function[kidney_function]

        def lognormal(prior):
            return prior.median * np.exp(prior.sigma * rng.standard_normal(n))

        volume = lognormal(p.volume) * weight
        cl = lognormal(p.cl_total) * (weight / 70.0) ** 0.75
        fe = rng.beta(p.fe.alpha, p.fe.beta, n)
        thalf = half_life(volume, fe * cl * lognormal(kf), (1 - fe) * cl)
        lo, hi = np.quantile(thalf, [(1 - prob) / 2, (1 + prob) / 2])
        return float(lo), float(hi)

    def cited_sources(self) -> list[str]:
        """Every source string of the model's own facts and priors (not the defaults'), once."""
        own = [*self.sources.values()]
        own += [extra.source for extra in (self.half_life, self.extrip) if extra is not None]
        priors = [getattr(self.priors, name) for name in Priors.model_fields]
        for group in (self.ectr, self.kidney_function, self.errors):
            priors += group.values()
        priors.append(self.weight)
        own += [p.source for p in priors if p.origin != "default.toml" or self.name == "default"]
        return list(dict.fromkeys(own))

    def prior_table(self, skip: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
        """(name, description, source) of every prior but those in ``skip`` (the parameters a
        fit's structure does not have), for reports and attributes."""
        rows = []
        for name in Priors.model_fields:
            if name in skip:
                continue
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
    structure: StructureChoice | None = None
    priors: dict[PriorName, Prior] = Field(default_factory=dict)
    ectr: dict[str, LogNormal] = Field(default_factory=dict)
    kidney_function: dict[Literal["normal", "impaired", "anuric"], LogNormal] = Field(
        default_factory=dict
    )
    errors: dict[Literal["level", "urine", "effluent", "effluent_sample"], LogNormal] = Field(
        default_factory=dict
    )
    weight: LogNormal | None = None


def half_life(volume, cl_renal, cl_nonrenal):
    """Elimination half-life ln 2 · V / (CL_R + CL_NR) (h, from L and L/h; arrays welcome)."""
    return math.log(2) * volume / (cl_renal + cl_nonrenal)


_NAME = r"[A-Z][a-z'’-]+"
_INITIALS = r" [A-Z]{1,3}(?=[,;.]| et al|\s*\()"
#: an author list as sources write them: "Surname AB, Van der Name C, Other D" (initials followed
#: by punctuation, "et al" or a parenthesis), possibly closed by "et al." and a group's name; the
#: first author not preceded by a capitalised word, so that "Baclofen Tablets USP," is no author
_AUTHORS = re.compile(
    rf"(?<![A-Za-z] )\b(?P<first>{_NAME}){_INITIALS}"
    rf"(?:,\s+(?:{_NAME} )?(?:[a-z]+ )*{_NAME}{_INITIALS})*"
    r"(?:,? et al\.?)?(?:;\s+[A-Z][\w ]*?(?:[Ww]orkgroup|[Gg]roup|[Ii]nvestigators)\b)?"
)
_YEAR = re.compile(r"\b(?:19|20)\d{2}\b")
_LINK = re.compile(r"(?:https?://|doi[: ]\s*)\S+")


def short_citations(source: str, width: int = 40) -> list[str]:
    """The citations of a source string as "First-author year" ("Lee 2020"), in order, each
    once; a source in which none can be read is given as its text (URLs shortened to their
    host) cut to ``width`` characters at a word boundary.

    The year of an author list is the first after it and before the next author list, URL, DOI
    or ``;`` (journal references give the year before the volume: "2007;63(12):1143-6").
    """
    found = []
    lists = list(_AUTHORS.finditer(source))
    for k, m in enumerate(lists):
        stop = lists[k + 1].start() if k + 1 < len(lists) else len(source)
        end = re.compile(r";|https?://|doi[: ]").search(source, m.end(), stop)
        year = _YEAR.search(source, m.end(), end.start() if end else stop)
        if year:
            found.append(f"{m.group('first')} {year.group()}")
    if found:
        return list(dict.fromkeys(found))
    return [_shorten(_LINK.sub(_host, source).strip(" .,;'\""), width)]


def _host(link: re.Match) -> str:
    """A URL as its host ("wikitox.org"), a DOI as itself."""
    text = link.group().rstrip(").,;")
    tail = link.group()[len(text) :]
    if text.lower().startswith("doi"):
        return text + tail
    return re.sub(r"^https?://(www\.)?", "", text).split("/")[0] + tail


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else textwrap.shorten(text, width, placeholder=" …")


def available_drugs(folder: str | Path | None = None) -> list[str]:
    """Names of the drugs that have a model file: the shipped ones and those of the user's
    folder (``folder``, else ``--models-dir`` or ``$DIALYZABILITY_MODELS``)."""
    folders = [models_dir(), user_folder(folder)]
    return sorted({p.stem.lower() for f in folders if f for p in f.glob("*.toml")} - {"default"})


def _read(path: Path) -> _DrugFile:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
        return _DrugFile.model_validate(raw)
    except tomllib.TOMLDecodeError as exc:
        raise DrugModelError(f"{path}: invalid TOML: {exc}") from exc
    except ValidationError as exc:
        raise DrugModelError(f"{path}: {_problems(exc)}") from exc


def _problems(exc: ValidationError) -> str:
    """Every problem pydantic found, each as "field 'a.b': message"."""
    found = [
        f"field '{'.'.join(str(p) for p in err['loc']) or '(file)'}': {err['msg']}"
        for err in exc.errors(include_url=False)
    ]
    if len(found) == 1:
        return found[0]
    return f"{len(found)} problems:\n  " + "\n  ".join(found)


def user_folder(folder: str | Path | None = None) -> Path | None:
    """The user's folder of drug models: ``folder`` if given, else the active one
    (:func:`~dialyzability.io.resources.user_models_dir`), else None.

    Raises
    ------
    DrugModelError
        If the folder does not exist.
    """
    folder = Path(folder).expanduser() if folder is not None else user_models_dir()
    if folder is None:
        return None
    if not folder.is_dir():
        raise DrugModelError(
            f"{folder}: no such folder of drug models (from --models-dir or ${MODELS_ENV})"
        )
    return folder.resolve()


def drug_file(name: str, folder: str | Path | None = None) -> tuple[Path | None, Path | None]:
    """The file of drug ``name`` and, when it is a user file, the shipped file it replaces.

    The one place of the resolution order: the user's folder (``folder``, else
    ``--models-dir``, else ``$DIALYZABILITY_MODELS``) first, then the shipped ``models/``.
    ``"default"`` resolves the same way. Returns ``(None, None)`` when no folder has it.
    """
    key = name.strip().lower()
    shipped = _in(models_dir(), key)
    user = user_folder(folder)
    if user is not None and user != models_dir().resolve():
        path = _in(user, key)
        if path is not None:
            return path, shipped
    return shipped, None


def _in(folder: Path, key: str) -> Path | None:
    """The file ``<key>.toml`` of ``folder``, its stem in any case (``Baclofen.toml``)."""
    path = folder / f"{key}.toml"
    if path.is_file():
        return path
    return next((p for p in sorted(folder.glob("*.toml")) if p.stem.lower() == key), None)


def _stamp(path: Path) -> int:
    return path.stat().st_mtime_ns


def load_drug(name: str, folder: str | Path | None = None) -> DrugModel:
    """Load the drug model ``name`` merged with ``default.toml``.

    Parameters
    ----------
    name
        A drug with a model file (case-insensitive), or ``"default"``.
    folder
        The user's folder of model files, searched before the shipped ``models/``; by default
        the one given by ``--models-dir`` or ``$DIALYZABILITY_MODELS``, if any
        (:func:`drug_file`).

    Raises
    ------
    DrugModelError
        If there is no such drug, or its file is malformed (naming the file and every field).
    """
    key = name.strip().lower()
    default, default_overrides = drug_file("default", folder)
    if key == "default":
        path, overrides = default, default_overrides
    else:
        path, overrides = drug_file(key, folder)
        if path is None:
            known = ", ".join(available_drugs(folder)) or "none"
            raise DrugModelError(
                f"unknown drug {name!r}: no model file {key}.toml (known drugs: {known}; "
                'use drug = "default" for weakly informative priors)'
            )
    user = path.parent != models_dir()
    return _load(key, path, _stamp(path), default, _stamp(default), user, overrides)


@cache
def _load(
    key: str,
    path: Path,
    stamp: int,
    default_path: Path,
    default_stamp: int,
    user: bool,
    overrides: Path | None,
) -> DrugModel:
    """:func:`load_drug` of resolved files (cached while the files are unchanged)."""
    default = _read(default_path)
    if key == "default":
        drug = default
    else:
        drug = _read(path)
    origin = path.name
    where = str(path) if user else path.name  # how errors name the file

    def tag(prior, file):
        return prior.model_copy(update={"origin": file})

    priors = {k: tag(v, "default.toml") for k, v in default.priors.items()}
    if drug.blood_plasma_ratio is not None and key != "default":
        priors["blood_plasma_ratio"] = tag(
            blood_plasma_prior(drug.blood_plasma_ratio, where), origin
        )
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
            raise DrugModelError(f"{where}: field 'molar_mass.value': {exc}") from exc
        sources["molar_mass"] = drug.molar_mass.source
    low = high = None
    if drug.therapeutic_range is not None:
        tr = drug.therapeutic_range
        try:
            low = parse_quantity(tr.low, "concentration", molar_mass)
            high = parse_quantity(tr.high, "concentration", molar_mass)
        except UnitError as exc:
            raise DrugModelError(f"{where}: field 'therapeutic_range': {exc}") from exc
        sources["therapeutic_range"] = tr.source
    binding = None
    if drug.protein_binding is not None:
        binding = _fraction(drug.protein_binding.value, where, "protein_binding")
        sources["protein_binding"] = drug.protein_binding.source
    toxic = None
    if drug.toxic_threshold is not None:
        try:
            toxic = parse_quantity(str(drug.toxic_threshold.value), "concentration", molar_mass)
        except UnitError as exc:
            raise DrugModelError(f"{where}: field 'toxic_threshold.value': {exc}") from exc
        sources["toxic_threshold"] = drug.toxic_threshold.source
    bp = None
    if drug.blood_plasma_ratio is not None:
        value = drug.blood_plasma_ratio.value
        if isinstance(value, str):
            raise DrugModelError(
                f"{where}: field 'blood_plasma_ratio.value': give a number or [low, high]"
            )
        bp = tuple(value) if isinstance(value, tuple) else (float(value), float(value))
        if not 0 < bp[0] <= bp[1]:
            raise DrugModelError(f"{where}: field 'blood_plasma_ratio.value': need 0 < low <= high")
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
            structure=drug.structure or default.structure or StructureChoice(),
            priors=Priors(**priors),
            ectr=merged["ectr"],
            kidney_function=merged["kidney_function"],
            errors=merged["errors"],
            weight=weight,
            path=str(path),
            user=user,
            overrides=str(overrides) if overrides else None,
            defaults=str(default_path) if default_path.parent != models_dir() else None,
        )
    except ValidationError as exc:
        raise DrugModelError(f"{where}: {_problems(exc)}") from exc


def blood_plasma_prior(fact: Sourced, where: str = "") -> LogNormal:
    """The prior of B:P from a drug's cited ``blood_plasma_ratio`` (low, high), log-normal:
    median at the geometric mid-range sqrt(low · high), and sigma such that the central 95 %
    interval is the range widened by a factor e^BLOOD_PLASMA_MARGIN (1.22) at each end,

        sigma = (log(high / low) / 2 + BLOOD_PLASMA_MARGIN) / 1.96

    (a single cited value, low = high, gets sigma 0.10: ×/÷ 1.22 at 95 %, for between-patient
    haematocrit and assay differences the value does not carry)."""
    value = fact.value
    if isinstance(value, str):
        raise DrugModelError(
            f"{where}: field 'blood_plasma_ratio.value': give a number or [low, high]"
        )
    low, high = value if isinstance(value, tuple) else (float(value), float(value))
    if not 0 < low <= high:
        raise DrugModelError(f"{where}: field 'blood_plasma_ratio.value': need 0 < low <= high")
    sigma = (0.5 * math.log(high / low) + BLOOD_PLASMA_MARGIN) / 1.96
    cited = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    return LogNormal(
        dist="lognormal",
        median=math.sqrt(low * high),
        sigma=sigma,
        source=f"From the drug's cited whole-blood/plasma ratio {cited} (median at the geometric "
        f"mid-range, 95 % interval the range widened x/÷ {math.exp(BLOOD_PLASMA_MARGIN):.2f}): "
        f"{fact.source}",
    )


def _fraction(value, origin: str, field: str) -> float:
    """A fraction given as a number, or the midpoint of a range [low, high]."""
    if isinstance(value, str):
        raise DrugModelError(f"{origin}: field '{field}.value': give a number or [low, high]")
    lo, hi = value if isinstance(value, tuple) else (value, value)
    if not 0 <= lo <= hi <= 1:
        raise DrugModelError(f"{origin}: field '{field}.value': need 0 <= low <= high <= 1")
    return (lo + hi) / 2


def catalogue(folder: str | Path | None = None) -> list[dict]:
    """Every available drug model (shipped and the user's, :func:`available_drugs`) as a
    JSON-ready row: file, whether it is a user file and what it overrides, description, molar
    mass, EXTRIP grade, cited and prior half-life, and the short citation of each source."""
    rows = []
    for name in available_drugs(folder):
        drug = load_drug(name, folder)
        lo, hi = drug.prior_half_life()
        cites = [c for source in drug.cited_sources() for c in short_citations(source)]
        rows.append(
            {
                "name": name,
                "description": drug.description,
                "file": drug.path,
                "user": drug.user,
                "overrides": drug.overrides,
                "molar_mass_g_per_mol": drug.molar_mass,
                "extrip": drug.extrip.model_dump() if drug.extrip else None,
                "half_life": drug.half_life.model_dump() if drug.half_life else None,
                "prior_half_life_95_h": [lo, hi],
                "citations": list(dict.fromkeys(cites)),
                "not_found": drug.not_found,
            }
        )
    return rows


def catalogue_table(rows: list[dict]) -> str:
    """:func:`catalogue` as a text table; columns as wide as their longest line, long texts
    wrapped at word boundaries (never cut)."""
    header = ("drug", "model", "description", "molar mass", "EXTRIP", "prior t½ 95 %", "sources")
    wrap = {2: 28, 6: 52}  # column: width at which its text wraps
    cells = []
    for r in rows:
        model = "user" if r["user"] else "shipped"
        if r["overrides"]:
            model += " (overrides shipped)"
        mm = r["molar_mass_g_per_mol"]
        ex = r["extrip"]
        grade = "not graded"
        if ex and ex.get("dialyzability"):
            grade = ex["dialyzability"] + (f" ({ex['evidence']})" if ex.get("evidence") else "")
        lo, hi = r["prior_half_life_95_h"]
        cells.append(
            (
                r["name"],
                model,
                r["description"] or "–",
                f"{mm:g} g/mol" if mm else "–",
                grade,
                f"{lo:.2g}–{hi:.3g} h",
                r["citations"] or ["–"],
            )
        )

    def lines(i, text):
        if isinstance(text, list):  # citations: broken between citations, never inside one
            out = [text[0]]
            for item in text[1:]:
                if len(out[-1]) + 2 + len(item) <= wrap[i]:
                    out[-1] += "; " + item
                else:
                    out[-1] += ";"
                    out.append(item)
            return out
        if i not in wrap:
            return [text]
        return textwrap.wrap(text, wrap[i], break_long_words=False, break_on_hyphens=False)

    wrapped = [[lines(i, c) or [""] for i, c in enumerate(row)] for row in cells]
    widths = [len(h) for h in header]
    for row in wrapped:
        widths = [max(w, *(len(x) for x in col)) for w, col in zip(widths, row, strict=True)]

    def line(values):
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    for row in wrapped:
        for k in range(max(len(col) for col in row)):
            out.append(line([col[k] if k < len(col) else "" for col in row]))
    return "\n".join(out)


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
