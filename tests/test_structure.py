"""The structural model: every disposition and absorption against a numerical ODE solution, the
compiled kernel against the array form, gradients against finite differences, and the model
built for each structure."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dialyzability.design import BatchDesign
from dialyzability.pk.structure import (
    ABSORPTIONS,
    DISPOSITIONS,
    Structure,
    StructureError,
    macro_rates,
)
from tests.test_kinetics import random_design

STRUCTURES = [Structure(d, a) for d in DISPOSITIONS for a in ABSORPTIONS]


def ode_reference(times, design, structure, p):
    """Integrate the structure's ODE with scipy, piecewise between sorted events: state
    (G fast, G slow, A1, A2, AUC of each window); an oral dose enters the guts at its time plus
    the lag, split F (1 − f_s) fast and F f_s slow."""
    times = np.asarray(times, dtype=float)
    lag = p.get("lag", 0.0) if structure.absorption == "lag" else 0.0
    slow = p.get("fraction_slow", 0.0) if structure.absorption == "dual" else 0.0
    ka_slow = p.get("ka_slow", 1.0)
    two = structure.compartments == 2
    phi = p["fraction_peripheral"] if two else 0.0
    v1, v2 = p["volume"] * (1 - phi), p["volume"] * phi
    q = p["cl_intercompartmental"] if two else 0.0
    inputs = []  # (time, event order, state index, amount)
    for j, e in enumerate(design.dose_event):
        amount = design.dose_amount[j]
        if design.dose_oral[j]:
            f = p["bioavailability"]
            inputs.append((times[e] + lag, e, 0, f * (1 - slow) * amount))
            inputs.append((times[e] + lag, e, 1, f * slow * amount))
        else:
            inputs.append((times[e], e, 2, amount))
    points = sorted(set(times.tolist()) | {t for t, *_ in inputs})
    starts = times[list(design.session_start)]
    ends = times[list(design.session_end)]
    cl_s = [p["cl_ectr"][m] for m in design.session_modality]
    w = np.asarray(design.windows).reshape(-1, 2)
    state = np.zeros(4 + len(w))
    at = {}
    for i, t0 in enumerate(points):
        for t, _, k, amount in inputs:
            if t == t0:
                state[k] += amount
        at[t0] = state[2] / v1
        if i + 1 == len(points):
            break
        t1 = points[i + 1]
        mid = 0.5 * (t0 + t1)
        cl = p["cl"] + sum(c for c, s, e in zip(cl_s, starts, ends, strict=True) if s <= mid < e)
        inside = np.array([times[a] <= mid < times[b] for a, b in w], dtype=float)

        def rhs(_, y, cl=cl, inside=inside):
            ka, ks = p["ka"], ka_slow
            exchange = q * (y[2] / v1 - (y[3] / v2 if two else 0.0))
            return np.concatenate(
                [
                    [-ka * y[0], -ks * y[1], ka * y[0] + ks * y[1] - cl * y[2] / v1 - exchange],
                    [exchange if two else 0.0],
                    inside * y[2] / v1,
                ]
            )

        state = solve_ivp(rhs, (t0, t1), state, method="DOP853", rtol=1e-13, atol=1e-15).y[:, -1]
    conc = np.array([at[times[s]] for s in design.samples])
    return conc, state[4:]


def random_params(rng, structure, design):
    p = {
        "volume": rng.uniform(10, 100),
        "cl": rng.uniform(0.5, 10),
        "cl_ectr": rng.uniform(0.5, 15, 2),
        "ka": rng.uniform(0.1, 3),
        "bioavailability": rng.uniform(0.3, 1),
        "a0": 0.0,
        "fraction_peripheral": rng.uniform(0.2, 0.8),
        "cl_intercompartmental": rng.uniform(0.5, 20),
        "lag": rng.uniform(0.2, 3),
        "ka_slow": rng.uniform(0.01, 0.08),
        "fraction_slow": rng.uniform(0.1, 0.9),
    }
    return {k: v for k, v in p.items() if k in _BASE or k in structure.parameters}


_BASE = ("volume", "cl", "cl_ectr", "ka", "bioavailability", "a0")


def _batch(p):
    return {
        k: np.atleast_1d(np.asarray(v, dtype=float))[None]
        if k == "cl_ectr"
        else np.array([v], dtype=float)
        for k, v in p.items()
    }


@pytest.mark.parametrize("structure", STRUCTURES, ids=lambda s: s.name)
@pytest.mark.parametrize("seed", range(3))
def test_every_structure_matches_the_ode(structure, seed):
    rng = np.random.default_rng(100 + seed)
    times, design = random_design(rng)
    p = random_params(rng, structure, design)
    sol = structure.solve(times[None, :], BatchDesign.stack([design]), _batch(p))
    conc, auc = ode_reference(times, design, structure, p)
    np.testing.assert_allclose(sol.conc[0, : len(design.samples)], conc, rtol=1e-8, atol=1e-13)
    np.testing.assert_allclose(sol.auc[0, : len(design.windows)], auc, rtol=1e-8, atol=1e-12)
    # the curve between events agrees with the levels at the sample times
    at = sol.at(times[list(design.samples)][None, :])[0]
    np.testing.assert_allclose(at, conc, rtol=1e-8, atol=1e-13)


@pytest.mark.parametrize("structure", STRUCTURES, ids=lambda s: s.name)
def test_amounts_per_compartment(structure):
    # the central amount is V1 x the level; the peripheral one follows dA2/dt = Q (C1 − A2/V2)
    rng = np.random.default_rng(8)
    times, design = random_design(rng)
    p = random_params(rng, structure, design)
    sol = structure.solve(times[None], BatchDesign.stack([design]), _batch(p))
    t = np.linspace(times.min(), times.max() + 5, 40)[None]
    central, peripheral = sol.amounts_at(t)
    v1, _ = structure.volumes(_batch(p))
    np.testing.assert_allclose(central, sol.at(t) * v1[:, None], rtol=1e-12)
    if structure.compartments == 1:
        assert not peripheral.any()
    else:
        assert (peripheral >= 0).all() and peripheral[0, -1] > 0


def test_a_lag_delays_the_curve_exactly():
    # one oral dose at t = 0 with a lag of 1.5 h is the same dose given at 1.5 h without one
    rng = np.random.default_rng(3)
    times, design = random_design(rng)
    p = random_params(rng, Structure("one-compartment", "lag"), design)
    lagged = Structure("one-compartment", "lag").solve(
        times[None], BatchDesign.stack([design]), _batch(p)
    )
    moved = times.copy()
    for e, oral in zip(design.dose_event, design.dose_oral, strict=True):
        moved[e] += p["lag"] if oral else 0.0
    plain = Structure().solve(moved[None], BatchDesign.stack([design]), _batch(p))
    np.testing.assert_allclose(lagged.conc, plain.conc, rtol=1e-12)


def test_dual_absorption_without_a_slow_fraction_is_first_order():
    rng = np.random.default_rng(4)
    times, design = random_design(rng)
    p = random_params(rng, Structure("one-compartment", "dual"), design)
    p["fraction_slow"] = 0.0
    dual = Structure("one-compartment", "dual").solve(
        times[None], BatchDesign.stack([design]), _batch(p)
    )
    plain = Structure().solve(times[None], BatchDesign.stack([design]), _batch(p))
    np.testing.assert_allclose(dual.conc, plain.conc, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(dual.auc, plain.auc, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("structure", STRUCTURES, ids=lambda s: s.name)
def test_kernel_equals_array_form_with_finite_gradients(structure):
    import pytensor
    import pytensor.tensor as pt

    rng = np.random.default_rng(7)
    times, design = random_design(rng)
    p = random_params(rng, structure, design)
    batch = BatchDesign.stack([design])
    values = _batch(p)
    values["dose_amount"] = batch.dose_amount.astype(float)
    symbols = {k: pt.tensor(k, shape=np.shape(v), dtype="float64") for k, v in values.items()}
    t = pt.matrix("t", shape=(1, len(times)))
    out = structure.solve(t, batch, symbols, backend="kernel")
    weights_c = rng.normal(size=out["conc"].type.shape)
    weights_a = rng.normal(size=out["auc"].type.shape)
    target = (out["conc"] * weights_c).sum() + (out["auc"] * weights_a).sum()
    names = [k for k in symbols if k not in ("a0", "dose_amount")]
    grads = pt.grad(target, [symbols[k] for k in names] + [t])
    fn = pytensor.function([t, *symbols.values()], [out["conc"], out["auc"], *grads])
    conc, auc, *g = fn(times[None], *values.values())
    ref = structure.solve(times[None], batch, _batch(p))
    np.testing.assert_allclose(conc, ref.conc, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(auc, ref.auc, rtol=1e-10, atol=1e-300)

    def numeric(name, h=1e-6):
        base = _batch(p)
        flat = base[name].reshape(-1)
        out = np.zeros_like(flat)
        for i in range(len(flat)):
            step = h * max(abs(flat[i]), 1e-3)
            up, down = dict(base), dict(base)
            up[name] = base[name].copy().reshape(-1)
            down[name] = base[name].copy().reshape(-1)
            up[name][i] += step
            down[name][i] -= step
            up[name], down[name] = (x.reshape(base[name].shape) for x in (up[name], down[name]))
            hi = structure.solve(times[None], batch, up)
            lo = structure.solve(times[None], batch, down)
            value = lambda s: (s.conc * weights_c).sum() + (s.auc * weights_a).sum()  # noqa: E731
            out[i] = (value(hi) - value(lo)) / (2 * step)
        return out.reshape(base[name].shape)

    for name, grad in zip(names, g, strict=False):
        assert np.all(np.isfinite(grad)), name
        np.testing.assert_allclose(grad, numeric(name), rtol=1e-5, atol=1e-7, err_msg=name)
    assert np.all(np.isfinite(g[-1]))


def test_names_and_records():
    s = Structure("two-compartment", "dual")
    assert s.name == "two-compartment+dual"
    assert s.parameters == (
        "fraction_peripheral",
        "cl_intercompartmental",
        "ka_slow",
        "fraction_slow",
    )
    assert Structure.from_record(s.record()) == s
    assert Structure.from_record(None) == Structure()
    assert s.label == "two compartments, dual (fast and slow) absorption"
    with pytest.raises(StructureError, match="unknown disposition 'three'"):
        Structure("three")
    with pytest.raises(StructureError, match="JAX"):
        Structure("two-compartment").solve(None, None, {}, backend="graph")


def test_macro_rates_by_hand():
    # k10 0.2, k12 0.3, k21 0.1: s = 0.6, d = 0.4² + 4 · 0.03 = 0.28, α, β = (0.6 ± √0.28) / 2
    alpha, beta = macro_rates(0.2, 0.3, 0.1)
    assert math.isclose(alpha, (0.6 + math.sqrt(0.28)) / 2, rel_tol=1e-14)
    assert math.isclose(beta, (0.6 - math.sqrt(0.28)) / 2, rel_tol=1e-12)
    assert math.isclose(alpha * beta, 0.2 * 0.1, rel_tol=1e-14)  # product = k10 k21


def _posterior(**values):
    """A posterior Dataset of the given (chain, draw) values (one chain)."""
    import xarray as xr

    return xr.Dataset(
        {
            k: (("chain", "draw", "modality"), np.reshape(v, (1, -1, 1)))
            if k == "cl_ectr"
            else (("chain", "draw"), np.reshape(v, (1, -1)))
            for k, v in values.items()
        },
        coords={"modality": ["HD"]},
    )


def test_half_lives_of_two_compartments_by_hand():
    from dialyzability.results.quantities import REGISTRY

    # V1 = 10 L, V2 = 30 L (V = 40 L, φ = 0.75), Q = 3 L/h, CL_R + CL_NR = 2 L/h, CL_ECTR 8:
    # off ECTR k10 0.2, k12 0.3, k21 0.1 -> β = 0.035425 /h, t½ = ln 2 / β = 19.567 h, and
    # α = 0.564575 /h, t½α = 1.2277 h
    post = _posterior(
        volume=[40.0], volume_central=[10.0], volume_peripheral=[30.0],
        cl_intercompartmental=[3.0], cl_renal=[1.5], cl_nonrenal=[0.5], cl_ectr=[8.0],
    )  # fmt: skip
    q = {x.name: x for x in REGISTRY}
    off = q["thalf_off"].compute(post, "HD").item()
    alpha = q["thalf_alpha"].compute(post, "HD").item()
    assert math.isclose(off, math.log(2) / 0.0354249, rel_tol=1e-5)
    assert math.isclose(alpha, math.log(2) / 0.5645751, rel_tol=1e-6)
    # on ECTR k10 = 10 / 10 = 1: s = 1.4, d = 1.2² + 0.12 = 1.56, β = 2 · 0.1 / (1.4 + √1.56)
    on = q["thalf_on_terminal"].compute(post, "HD").item()
    assert math.isclose(on, math.log(2) / (0.2 / (1.4 + math.sqrt(1.56))), rel_tol=1e-12)


def test_removal_in_six_hours_of_two_compartments_matches_the_ode():
    from dialyzability.results.quantities import REGISTRY

    v1, v2, q_, cl, cl_e = 12.0, 30.0, 2.5, 1.8, 9.0
    post = _posterior(
        volume=[v1 + v2], volume_central=[v1], volume_peripheral=[v2],
        cl_intercompartmental=[q_], cl_renal=[1.0], cl_nonrenal=[cl - 1.0], cl_ectr=[cl_e],
    )  # fmt: skip
    removed = {x.name: x for x in REGISTRY}["removed_6h"].compute(post, "HD").item()
    # start on the terminal phase off ECTR: A2 / A1 = k12 / (k21 − β)
    k12, k21 = q_ / v1, q_ / v2
    _, beta = macro_rates(cl / v1, k12, k21)
    a1 = 1 / (1 + k12 / (k21 - beta))

    def rhs(_, y):
        out = (cl + cl_e) * y[0] / v1
        return [-out - k12 * y[0] + k21 * y[1], k12 * y[0] - k21 * y[1], cl_e * y[0] / v1]

    y = solve_ivp(rhs, (0, 6), [a1, 1 - a1, 0.0], method="DOP853", rtol=1e-12, atol=1e-14).y
    assert math.isclose(removed, 100 * y[2, -1], rel_tol=1e-9)
    # the half-life the session shows: 6 h · ln 2 / ln(C(0) / C(6 h))
    apparent = {x.name: x for x in REGISTRY}["thalf_on"].compute(post, "HD").item()
    assert math.isclose(apparent, 6 * math.log(2) / math.log(a1 / y[0, -1]), rel_tol=1e-9)
    # one compartment: 100 · CL_E / CL_on · (1 − e^(−6 CL_on / V)), here V = 42 L, CL_on 10.8
    one = _posterior(volume=[42.0], cl_renal=[1.0], cl_nonrenal=[0.8], cl_ectr=[9.0])
    expected = 100 * 9.0 / 10.8 * (1 - math.exp(-6 * 10.8 / 42))
    value = {x.name: x for x in REGISTRY}["removed_6h"].compute(one, "HD").item()
    assert math.isclose(value, expected, rel_tol=1e-12)


@pytest.mark.parametrize("structure", STRUCTURES, ids=lambda s: s.name)
def test_the_model_builds_for_every_structure(structure):
    from dialyzability.io.case import load_case
    from dialyzability.model.build import build_model
    from tests.conftest import LEE

    built = build_model([load_case(LEE)], structure=structure)
    names = {v.name for v in built.model.free_RVs} | {v.name for v in built.model.deterministics}
    assert set(structure.parameters) <= names
    assert ("volume_central" in names) == (structure.compartments == 2)
    logp = built.model.compile_logp()(built.model.initial_point(0))
    assert np.isfinite(logp)
    if structure.compartments == 1:  # the JAX path's array form gives the same density
        graph = build_model([load_case(LEE)], structure=structure, kinetics="graph")
        other = graph.model.compile_logp()(graph.model.initial_point(0))
        assert math.isclose(logp, other, rel_tol=1e-10)


def test_outputs_of_a_two_compartment_fit(tmp_path):
    from dialyzability.io.case import load_case
    from dialyzability.outputs.report import build_report
    from tests.conftest import LEE, nuts_free_fit

    structure = Structure("two-compartment", "dual")
    fit = nuts_free_fit([load_case(LEE)], seed=5, draws=100, structure=structure)
    summary = fit.summary()
    assert summary.structure["name"] == "two-compartment+dual"
    for name in ("volume_central", "cl_intercompartmental", "thalf_alpha"):
        assert name in summary.quantities
    first = summary.sessions[0]
    assert "peripheral_at_end_mg" in first
    text = build_report(fit, summary, []).markdown()
    assert "Structural model: two compartments, dual (fast and slow) absorption." in text
    assert "After each session: rebound and what is left" in text
    assert "peripheral amount at its end (mg)" in text


@pytest.mark.parametrize("backend", ["numpy", "kernel"])
def test_a_body_burden_without_dose_starts_on_the_terminal_phase(backend):
    # a chronically poisoned patient: a0 split A2/A1 = k12/(k21 − β), so that off ECTR the level
    # falls mono-exponentially at β from the start, C(t) = C(0) e^(−βt) (no distribution phase)
    from dialyzability.design import Design

    design = Design(n_events=4, samples=(1, 2, 3), windows=((0, 3),), initial_event=0)
    times = np.array([[0.0, 0.0, 5.0, 30.0]])
    p = {
        "volume": np.array([60.0]), "cl": np.array([2.0]), "cl_ectr": np.zeros((1, 1)),
        "ka": np.array([1.0]), "bioavailability": np.array([1.0]), "a0": np.array([900.0]),
        "fraction_peripheral": np.array([0.6]), "cl_intercompartmental": np.array([1.5]),
    }  # fmt: skip
    structure = Structure("two-compartment")
    v1, v2 = 24.0, 36.0
    _, beta = macro_rates(2.0 / v1, 1.5 / v1, 1.5 / v2)
    share = 1 / (1 + (1.5 / v1) / (1.5 / v2 - beta))
    expected = 900.0 * share / v1 * np.exp(-beta * times[0, 1:])
    batch = BatchDesign.stack([design])
    if backend == "numpy":
        conc = structure.solve(times, batch, p).conc
    else:
        import pytensor
        import pytensor.tensor as pt

        p["dose_amount"] = np.zeros((1, 1))
        sym = {k: pt.constant(v) for k, v in p.items()}
        conc = pytensor.function(
            [], structure.solve(pt.constant(times), batch, sym, "kernel")["conc"]
        )()
    np.testing.assert_allclose(conc[0], expected, rtol=1e-10)


def test_a_fit_saved_before_the_structures_loads_as_one_compartment(tmp_path):
    # the drug model saved without the structures' priors and the configuration without a
    # structure, as fits of earlier versions are: it loads, and reads as one compartment
    import json

    from dialyzability.io.case import load_case
    from dialyzability.results.fit import Fit, _digest
    from tests.conftest import LEE, nuts_free_fit

    fit = nuts_free_fit([load_case(LEE)], seed=6, draws=100, structure=Structure())
    before = fit.summary().to_json()
    attrs = fit.idata.attrs
    drug = json.loads(attrs["drug_model"])
    for name in ("fraction_peripheral", "cl_intercompartmental", "lag", "ka_slow", "fraction_slow"):
        del drug["priors"][name]
    del drug["structure"]
    config = json.loads(attrs["config"])
    del config["structure"]
    attrs["drug_model"], attrs["config"] = json.dumps(drug), json.dumps(config)
    attrs["config_hash"] = _digest(dict(attrs))
    fit.save(tmp_path)
    old = Fit.load(tmp_path)
    assert old.structure == Structure()
    assert old.drug.priors.lag.origin == "default.toml"
    after = old.summary().to_json()
    assert after["quantities"] == before["quantities"]
    assert after["verdict"] == before["verdict"]


def test_the_report_lists_only_the_priors_of_the_fit_structure():
    from dialyzability.io.case import load_case
    from dialyzability.outputs.report import build_report
    from tests.conftest import LEE, nuts_free_fit

    one = nuts_free_fit([load_case(LEE)], seed=7, draws=100, structure=Structure())
    text = build_report(one, one.summary(), []).markdown()
    assert "| volume |" in text and "fraction_peripheral" not in text and "ka_slow" not in text
    two = nuts_free_fit([load_case(LEE)], seed=7, draws=100, structure=Structure("two-compartment"))
    text = build_report(two, two.summary(), []).markdown()
    assert "| fraction_peripheral |" in text and "| lag |" not in text
