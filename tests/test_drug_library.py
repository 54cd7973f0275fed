"""The library of drug models and published cases.

Prior-predictive checks of every drug model in ``models/`` (parametrised over
:func:`~dialyzability.io.drugs.available_drugs`, so a new file is covered without editing this
file; seeded numpy Monte Carlo, no PyMC): the prior half-life of a 70-kg adult with normal
kidneys covers the half-lives the file cites, each extracorporeal clearance prior covers the
values it says were published, and every fact is either given with its source or named in
``not_found``. The slow test fits every published case in ``data/cases/``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tomli_w

from dialyzability.io.drugs import available_drugs, half_life, load_drug
from dialyzability.io.units import parse_quantity, registry

from .conftest import CASES

DRUGS = available_drugs()

#: facts every drug file gives with a source, or names in ``not_found`` with what was searched
FACTS = (
    "molar_mass",
    "protein_binding",
    "therapeutic_range",
    "toxic_threshold",
    "half_life",
    "blood_plasma_ratio",
    "extrip",
)

#: Monte Carlo draws and seed of the prior half-life: the 2.5 % and 97.5 % quantiles of 20 000
#: draws are within about 2 % of the exact ones (binomial SE of a tail count of 500 is 22)
DRAWS, SEED = 20_000, 20260


def _given(drug, fact: str):
    """The value of ``fact`` in the merged drug model (None when the file does not give it)."""
    return {
        "molar_mass": drug.molar_mass,
        "protein_binding": drug.protein_binding,
        "therapeutic_range": drug.therapeutic_high,
        "toxic_threshold": drug.toxic_level,
        "half_life": drug.half_life,
        "blood_plasma_ratio": drug.blood_plasma_ratio,
        "extrip": drug.extrip,
    }[fact]


def _fact_source(drug, fact: str) -> str:
    if fact in ("half_life", "extrip"):
        return getattr(drug, fact).source
    return drug.sources.get(fact, "")


@pytest.mark.parametrize("name", DRUGS)
def test_prior_half_life_covers_the_cited_half_lives(name):
    """(a) t½ = ln 2 · V / (CL_R + CL_NR) of a 70-kg adult with normal kidneys, drawn from the
    priors, has a 95 % interval containing every cited therapeutic and overdose half-life."""
    drug = load_drug(name)
    if drug.half_life is None:
        assert "half_life" in drug.not_found, f"{name}: half_life neither given nor not_found"
        pytest.skip(f"{name}: no half-life found ({drug.not_found['half_life']})")
    lo, hi = drug.prior_half_life(0.95, n=DRAWS, seed=SEED)
    cited = {
        kind: [parse_quantity(v, "time") for v in getattr(drug.half_life, kind) or []]
        for kind in ("therapeutic", "overdose")
    }
    assert any(cited.values()), f"{name}: half_life gives no value"
    for kind, values in cited.items():
        for t in values:
            assert lo <= t <= hi, (
                f"{name}: {kind} half-life {t:g} h outside the prior 95 % interval "
                f"{lo:.3g}-{hi:.3g} h"
            )


def _published_value(text: str, prior, group: str) -> float:
    """A published value in the prior's unit: clearances through the case files' parser."""
    if group == "ectr" or prior.unit == "L/h":
        return parse_quantity(text, "flow")
    ureg = registry()
    quantity = ureg.Quantity(text)
    return float(quantity.to(prior.unit).magnitude if prior.unit else quantity.magnitude)


def _priors_with_published(drug):
    out = [
        (f"priors.{k}", "priors", getattr(drug.priors, k)) for k in type(drug.priors).model_fields
    ]
    for group in ("ectr", "kidney_function", "errors"):
        out += [(f"{group}.{k}", group, p) for k, p in getattr(drug, group).items()]
    return [(where, group, p) for where, group, p in out if getattr(p, "published", None)]


@pytest.mark.parametrize("name", DRUGS)
def test_log_normal_priors_cover_their_published_values(name):
    """(b) each ``ectr.<modality>`` prior (and any other log-normal prior listing ``published``
    values) has a central 95 % interval containing every value it says was published."""
    drug = load_drug(name)
    for where, group, prior in _priors_with_published(drug):
        lo, hi = prior.interval(0.95)
        for text in prior.published:
            value = _published_value(text, prior, group)
            assert lo <= value <= hi, (
                f"{name}: {where} published {text} = {value:.4g} {prior.unit or ''} outside the "
                f"prior 95 % interval {lo:.3g}-{hi:.3g}"
            )


@pytest.mark.parametrize("name", DRUGS)
def test_every_fact_is_given_with_its_source_or_named_not_found(name):
    """(c) every fact is given with a source, or named in ``not_found`` with what was
    searched. Every prior cites a source."""
    drug = load_drug(name)
    missing = []
    for fact in FACTS:
        value = _given(drug, fact)
        if value is None:
            if not drug.not_found.get(fact, "").strip():
                missing.append(fact)
            continue
        assert len(_fact_source(drug, fact).strip()) > 10, f"{name}: {fact} has no source"
    assert not missing, f"{name}: neither given nor named in not_found: {', '.join(missing)}"
    for row, _, source in drug.prior_table():
        assert len(source) > 20, f"{name}: prior {row} has no source"


def test_half_life_formula_by_hand(tmp_path):
    """(d) the half-life formula at one point, by hand: V = 0.7 L/kg · 70 kg = 49 L, CL = 7 L/h
    (CL_R + CL_NR = fe · CL · K + (1 − fe) · CL = CL when K = 1, whatever fe)
    → t½ = 0.693 · 49 / 7 = 4.85 h. The prior half-life of a drug whose priors are this point
    (log-normal SDs of 1e-9) is an interval of zero width there."""
    assert half_life(49.0, 0.75 * 7.0, 0.25 * 7.0) == pytest.approx(4.852, abs=1e-3)
    assert half_life(0.7 * 70, 7.0, 0.0) == pytest.approx(math.log(2) * 49 / 7)

    def point(median):
        return {"dist": "lognormal", "median": median, "sigma": 1e-9, "source": "by hand"}

    raw = {
        "name": "point",
        "priors": {"volume": point(0.7), "cl_total": point(7.0)},
        "kidney_function": {"normal": point(1.0)},
    }
    (tmp_path / "point.toml").write_bytes(tomli_w.dumps(raw).encode())
    drug = load_drug("point", tmp_path)
    lo, hi = drug.prior_half_life(0.95, n=1000, seed=0)
    assert lo == pytest.approx(4.852, abs=1e-3) and hi == pytest.approx(4.852, abs=1e-3)
    # impaired kidneys (the default's factor K, median 0.35) lengthen it, by up to 1 / K when
    # the drug is all renal (fe ~ Beta(1, 1) by default): CL_R + CL_NR = 7 (K fe + 1 - fe)
    lo, hi = drug.prior_half_life(0.95, n=4000, seed=0, kidney_function="impaired")
    assert lo < 4.852 < 2 * 4.852 < hi


def test_prior_half_life_is_seeded_and_matches_the_formula():
    """The package's Monte Carlo interval is repeatable and equals the quantiles of the formula
    applied to the same draws, done here by hand."""
    drug = load_drug(DRUGS[0])
    assert drug.prior_half_life(seed=3, n=5000) == drug.prior_half_life(seed=3, n=5000)
    rng = np.random.default_rng(3)
    p, kf = drug.priors, drug.kidney_function["normal"]
    n = 5000
    v = p.volume.median * np.exp(p.volume.sigma * rng.standard_normal(n)) * 70
    cl = p.cl_total.median * np.exp(p.cl_total.sigma * rng.standard_normal(n))
    fe = rng.beta(p.fe.alpha, p.fe.beta, n)
    k = kf.median * np.exp(kf.sigma * rng.standard_normal(n))
    t = np.log(2) * v / (fe * cl * k + (1 - fe) * cl)
    expected = np.quantile(t, [0.025, 0.975])
    assert drug.prior_half_life(seed=3, n=n) == pytest.approx(tuple(expected))


# --- the published cases ---------------------------------------------------------------------

CASE_FILES = sorted(CASES.glob("*.toml"))


@pytest.mark.slow
@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_every_published_case_checks_and_fits(path):
    """Every case in data/cases/ passes ``check`` and its default fit has no divergence and
    R-hat <= 1.01."""
    from dialyzability.api import fit
    from dialyzability.cli import main
    from dialyzability.io.case import load_case

    assert main(["check", str(path)]) == 0
    d = fit(load_case(path), seed=20260).diagnostics()
    assert d.divergences == 0, d.sentence()
    assert d.r_hat_max <= 1.01, d.sentence()
