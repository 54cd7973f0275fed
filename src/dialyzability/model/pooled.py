"""The hierarchical model of many cases of one drug (DESIGN §5).

Cases share population distributions, all non-centred (Betancourt M, Girolami M. Hamiltonian
Monte Carlo for hierarchical models, 2015, arXiv:1312.0906):

* log V/kg:        mu_volume + tau_volume · z
* log CL_R (70 kg): mu_cl_renal[kidney class] + tau_cl_renal · z, scaled by (weight/70)^0.75
* log CL_NR:        mu_cl_nonrenal + tau_cl_nonrenal · z, scaled likewise
* log CL_ECTR:      mu_cl_ectr[modality] + tau_cl_ectr · z (one per case and modality used)
* log ka:           mu_ka + tau_ka · z

Population means take the single-case priors of the drug model; between-case SDs ``tau`` are
half-normal. Bioavailability, weight (when not reported), the body burden of cases without a
dose and every timing given as a range are per case, as in the single-case model. The kinetics
are :func:`~dialyzability.pk.closed_form.solve_batch`: the same closed form, vectorised over
cases, so
the graph has no loop over cases. Cases lacking an observation type contribute what they have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dialyzability.design import BatchDesign, case_events
from dialyzability.io.case import Case
from dialyzability.io.drugs import DrugModel, clearance_prior, error_prior, load_drug
from dialyzability.pk.closed_form import solve_batch
from dialyzability.pk.kernel import solve_op

KIDNEY_CLASSES = ("normal", "impaired", "anuric")
#: half-normal scales of the between-case SDs (log scale): a factor of e^0.5 = 1.65 is typical
TAU_SCALE = {"volume": 0.3, "cl_renal": 0.5, "cl_nonrenal": 0.5, "cl_ectr": 0.5, "ka": 0.5}


class PoolError(ValueError):
    """Cases that cannot be pooled (none, several drugs, ...)."""


@dataclass
class PooledModel:
    """A pooled PyMC model with what is needed to read it back."""

    cases: list[Case]
    drug: DrugModel
    model: object
    modalities: list[str]
    kidney_classes: list[str]
    latent_times: dict[str, tuple[int, str, float, float]]


def _padded(rows: list[list[float]], fill: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    width = max([len(r) for r in rows] + [1])
    values = np.full((len(rows), width), fill)
    mask = np.zeros((len(rows), width), dtype=bool)
    for i, r in enumerate(rows):
        values[i, : len(r)] = r
        mask[i, : len(r)] = True
    return values, mask


def log_marginal_t_batch(log_y, mask, mu, nu: float, scale: float):
    """:func:`~dialyzability.model.build.log_marginal_t` for each case (rows), summed; masked
    entries
    do not count (a case with none contributes 0)."""
    import pytensor.tensor as pt
    from scipy.special import gammaln

    n = mask.sum(axis=1)
    r = pt.where(mask, log_y - mu, 0.0)
    const = gammaln((nu + n) / 2) - gammaln(nu / 2) - n / 2 * np.log(nu * np.pi * scale**2)
    const = const - np.where(mask, log_y, 0.0).sum(axis=1)
    return (const - (nu + n) / 2 * pt.log1p((r**2).sum(axis=1) / (nu * scale**2))).sum()


def build_pooled_model(
    cases: list[Case], drug: DrugModel | None = None, kinetics: str = "kernel"
) -> PooledModel:
    """Build the hierarchical model of ``cases`` (all of one drug); ``kinetics`` as in
    :func:`~dialyzability.model.build.build_model` (``"graph"`` for PyMC's JAX path)."""
    import pymc as pm
    import pytensor.tensor as pt

    if not cases:
        raise PoolError("no cases to pool")
    drugs = sorted({c.drug for c in cases})
    if len(drugs) > 1:
        raise PoolError(f"cases of several drugs ({', '.join(drugs)}): pool one drug at a time")
    drug = drug or load_drug(drugs[0])
    n_cases = len(cases)
    modalities = list(dict.fromkeys(m for c in cases for m in c.modalities))
    classes = [k for k in KIDNEY_CLASSES if any(c.kidney_function == k for c in cases)]

    # per-case structure, with modality indices into the pooled modality list
    events, designs, windows = [], [], []
    for c in cases:
        ev, design, index = case_events(c)
        local = c.modalities
        design = design.__class__(
            **{
                **design.__dict__,
                "session_modality": tuple(
                    modalities.index(local[m]) for m in design.session_modality
                ),
            }
        )
        events.append(ev)
        designs.append(design)
        windows.append(index)
    batch = BatchDesign.stack(designs)
    n = batch.n_events

    # event times: fixed part plus latent timings scattered into place
    t0 = np.zeros((n_cases, n))
    latent: dict[str, tuple[int, str, float, float]] = {}
    scatter = []  # (case, event, latent index)
    for i, ev in enumerate(events):
        names = ev.latent()
        order = {name: len(latent) + k for k, name in enumerate(names)}
        for name, (lo, hi) in names.items():
            latent[f"{cases[i].id}:{name}"] = (i, name, lo, hi)
        basis = ev.resolve({name: 0.0 for name in names})
        t0[i, : len(basis)] = basis
        t0[i, len(basis) :] = max(t.hi for t in ev.times)
        for e in range(len(ev.times)):
            for name in names:  # which latent values an event's time adds (starts, durations)
                probe = ev.resolve({k: float(k == name) for k in names})[e] - basis[e]
                if probe:
                    scatter.append((i, e, order[name]))
    # flat event index and latent index of each (event, latent timing) pair
    scatter_rows = np.array([i * n + e for i, e, _ in scatter], dtype=int)
    scatter_cols = np.array([k for _, _, k in scatter], dtype=int)

    p = drug.priors
    known_w = np.array([c.patient.weight or 0.0 for c in cases])
    missing_w = np.flatnonzero(known_w == 0)
    coords = {"case": [c.id for c in cases], "modality": modalities, "kidney": classes}
    with pm.Model(coords=coords) as model:
        weight = pt.as_tensor_variable(known_w)
        if len(missing_w):
            z_w = pm.Normal("weight_z", 0.0, 1.0, shape=len(missing_w))
            weight = pt.set_subtensor(
                weight[missing_w], pt.exp(math.log(drug.weight.median) + drug.weight.sigma * z_w)
            )
        log_w70 = pt.log(weight / 70.0)

        def population(name, mu, sd, dims=None):
            m = pm.Normal(f"mu_{name}", mu, sd, dims=dims)
            tau = pm.HalfNormal(f"tau_{name}", TAU_SCALE[name])
            return m, tau

        mu_v, tau_v = population("volume", p.volume.mu, p.volume.sigma)
        z_v = pm.Normal("volume_z", 0.0, 1.0, dims="case")
        volume = pm.Deterministic("volume", pt.exp(mu_v + tau_v * z_v) * weight, dims="case")

        means = np.array([clearance_prior(drug, k)[0] for k in classes])
        sds = np.array(
            [
                np.sqrt(np.diag(clearance_prior(drug, k)[1] @ clearance_prior(drug, k)[1].T))
                for k in classes
            ]
        )
        mu_r, tau_r = population("cl_renal", means[:, 0], sds[:, 0], dims="kidney")
        mu_nr, tau_nr = population("cl_nonrenal", means[0, 1], sds[0, 1])
        cls = np.array([classes.index(c.kidney_function) for c in cases])
        z_r = pm.Normal("cl_renal_z", 0.0, 1.0, dims="case")
        z_nr = pm.Normal("cl_nonrenal_z", 0.0, 1.0, dims="case")
        cl_renal = pm.Deterministic(
            "cl_renal", pt.exp(mu_r[cls] + 0.75 * log_w70 + tau_r * z_r), dims="case"
        )
        cl_nonrenal = pm.Deterministic(
            "cl_nonrenal", pt.exp(mu_nr + 0.75 * log_w70 + tau_nr * z_nr), dims="case"
        )
        mu_ka, tau_ka = population("ka", p.ka.mu, p.ka.sigma)
        ka = pm.Deterministic(
            "ka", pt.exp(mu_ka + tau_ka * pm.Normal("ka_z", 0.0, 1.0, dims="case")), dims="case"
        )
        f = pm.Beta("bioavailability", p.bioavailability.alpha, p.bioavailability.beta, dims="case")
        if modalities:
            mu_e, tau_e = population(
                "cl_ectr",
                np.array([drug.ectr[m].mu for m in modalities]),
                np.array([drug.ectr[m].sigma for m in modalities]),
                dims="modality",
            )
            z_e = pm.Normal("cl_ectr_z", 0.0, 1.0, dims=("case", "modality"))
            cl_ectr = pm.Deterministic(
                "cl_ectr", pt.exp(mu_e[None, :] + tau_e * z_e), dims=("case", "modality")
            )
        else:
            cl_ectr = pt.zeros((n_cases, 1))

        no_dose = np.array([not c.doses for c in cases])
        a0 = pt.zeros(n_cases)
        if no_dose.any():
            guess = []
            for c in cases:
                levels = [x.value for x in c.concentrations if x.value and not x.below_lloq]
                c_ref = levels[0] if levels else (drug.therapeutic_high or 1.0)
                guess.append(c_ref * p.volume.median * (c.patient.weight or drug.weight.median))
            idx = np.flatnonzero(no_dose)
            z_a0 = pm.Normal("a0_z", 0.0, 1.0, shape=len(idx))
            a0 = pt.set_subtensor(a0[idx], pt.exp(np.log(np.array(guess)[idx]) + 1.5 * z_a0))

        if latent:
            bounds = np.array([(lo, hi) for _, _, lo, hi in latent.values()])
            t_latent = pm.Uniform("t_latent", bounds[:, 0], bounds[:, 1], shape=len(latent))
            # sparse scatter-add (an event's time may add several latent values)
            flat = pt.inc_subtensor(pt.as_tensor(t0.ravel())[scatter_rows], t_latent[scatter_cols])
            times = flat.reshape((n_cases, n))
        else:
            times = pt.as_tensor_variable(t0)

        cl = cl_renal + cl_nonrenal
        if kinetics == "graph":
            out = solve_batch(times, batch, volume, cl, cl_ectr, ka, f, a0, xp=pt)
        else:
            dose_amount = np.asarray(batch.dose_amount, dtype=float)
            out = solve_op(times, batch, volume, cl, cl_ectr, ka, f, a0, dose_amount)
        auc = out["auc"]

        # observations, padded per case with masks
        levels = [[x for x in c.concentrations] for c in cases]
        y, mask = _padded([[x.value if not x.below_lloq else 1.0 for x in ls] for ls in levels])
        quantified = mask & ~_padded([[x.below_lloq for x in ls] for ls in levels], 0.0)[0].astype(
            bool
        )
        censored = mask & ~quantified
        log_conc = pt.log(pt.maximum(out["conc"], 1e-12))
        nu, scale = error_prior(drug.errors["level"])
        if quantified.any():
            pm.Potential(
                "obs_level", log_marginal_t_batch(np.log(y), quantified, log_conc, nu, scale)
            )
        if censored.any():
            lloq, _ = _padded([[x.lloq or 1.0 for x in ls] for ls in levels])
            dist = pm.StudentT.dist(nu=nu, mu=log_conc, sigma=scale)
            pm.Potential(
                "obs_level_below_lloq", pt.where(censored, pm.logcdf(dist, np.log(lloq)), 0.0).sum()
            )
        urine_rows, urine_mask = _padded([w["urine"] for w in windows], 0)
        urine_y, _ = _padded([[u.recovered for u in c.urine] for c in cases])
        if urine_mask.any():
            pred = cl_renal[:, None] * _take(auc, urine_rows.astype(int), pt)
            nu, scale = error_prior(drug.errors["urine"])
            pm.Potential(
                "obs_urine",
                log_marginal_t_batch(np.log(urine_y), urine_mask, pt.log(pred), nu, scale),
            )
        sess_rows = [
            [w["sessions"][j] for j, s in enumerate(c.sessions) if s.amount is not None]
            for c, w in zip(cases, windows, strict=True)
        ]
        sess_mod = [
            [modalities.index(s.modality) for s in c.sessions if s.amount is not None]
            for c in cases
        ]
        rows, eff_mask = _padded(sess_rows, 0)
        mods, _ = _padded(sess_mod, 0)
        eff_y, _ = _padded([[s.amount for s in c.sessions if s.amount is not None] for c in cases])
        if eff_mask.any():
            cl_s = _take(cl_ectr, mods.astype(int), pt)
            pred = cl_s * _take(auc, rows.astype(int), pt)
            nu, scale = error_prior(drug.errors["effluent"])
            pm.Potential(
                "obs_effluent",
                log_marginal_t_batch(np.log(eff_y), eff_mask, pt.log(pred), nu, scale),
            )
    return PooledModel(cases, drug, model, modalities, classes, latent)


def _take(values, index, xp):
    """values[c, index[c, k]] (a small one-hot gather that works for numpy and pytensor)."""
    width = int(index.max()) + 1 if index.size else 1
    onehot = np.equal(index[..., None], np.arange(width)[None, None, :])
    return (xp.where(onehot, values[:, None, :width], 0.0)).sum(axis=-1)


@dataclass
class PooledFit:
    """A fitted pooled model: posterior, cases, drug model, config."""

    idata: object
    cases: list[Case]
    drug: DrugModel
    config: dict
    modalities: list[str]
    kidney_classes: list[str]

    def population_draws(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Population ratio of a typical 70-kg patient per (modality, kidney class), and the
        predictive ratio of a new patient of that type (between-case spread included)."""
        post = self.idata.posterior
        rng = np.random.default_rng(seed)
        out = {}
        mu_r = post["mu_cl_renal"].values  # (chain, draw, kidney)
        tau_r = post["tau_cl_renal"].values
        for j, m in enumerate(self.modalities):
            mu_e = post["mu_cl_ectr"].values[..., j]
            tau_e = post["tau_cl_ectr"].values
            for k, cls in enumerate(self.kidney_classes):
                log_ratio = mu_e - mu_r[..., k]
                out[f"ratio_{m}_{cls}"] = np.exp(log_ratio)
                z = rng.normal(size=(2, *log_ratio.shape))
                out[f"ratio_new_{m}_{cls}"] = np.exp(log_ratio + tau_e * z[0] - tau_r * z[1])
        for name in TAU_SCALE:
            out[f"tau_{name}"] = post[f"tau_{name}"].values
        return out

    def case_quantities(self, case: Case) -> dict[str, object]:
        """Registry quantities of one case under the pooled model (shrunk)."""
        from dialyzability.results.quantities import compute_all

        post = self.idata.posterior.sel(case=case.id)
        return compute_all(post, case.modalities)

    def diagnostics(self):
        import arviz as az

        from dialyzability.inference.gate import Diagnostics

        post = self.idata.posterior
        names = [v for v in post.data_vars if not v.endswith("_z")]
        rhat = az.rhat(post[names])
        ess = az.ess(post[names], method="bulk")
        r = max(float(np.nanmax(rhat[v].values)) for v in names)
        e = min(float(np.nanmin(ess[v].values)) for v in names)
        return Diagnostics(r, e, int(self.idata.sample_stats["diverging"].sum()))

    def summary(self, hdi_prob: float | None = None) -> dict:
        """JSON-ready summary: ``population`` and ``cases`` sections, diagnostics."""
        from dialyzability.results.quantities import HDI_PROB, describe, expand, label

        hdi_prob = hdi_prob or HDI_PROB
        population = {}
        for name, draws in self.population_draws().items():
            row = {"unit": "1", **describe(draws, hdi_prob)}
            if name.startswith("ratio"):
                row["p_above_1"] = float((draws > 1).mean())
            population[name] = row
        cases = {}
        for c in self.cases:
            draws = self.case_quantities(c)
            rows = expand(c.modalities, set(draws))
            quantities = {}
            for (name, q, m), values in zip(rows, draws.values(), strict=True):
                quantities[name] = {
                    "label": label(q, m),
                    "unit": q.unit,
                    **describe(values, hdi_prob),
                }
                if q.name == "ratio":
                    quantities[name]["p_above_1"] = float((np.asarray(values) > 1).mean())
            cases[c.id] = {
                "quantities": quantities,
                "kidney_function": c.kidney_function,
                "modalities": c.modalities,
            }
        d = self.diagnostics()
        return {
            "drug": self.drug.name,
            "hdi_prob": hdi_prob,
            "n_cases": len(self.cases),
            "population": population,
            "cases": cases,
            "diagnostics": d.to_json(),
        }


def fit_pooled(
    cases: list[Case],
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | None = None,
    sampler: str = "auto",
    target_accept: float = 0.9,
    progressbar: bool = False,
) -> PooledFit:
    """Fit the pooled model of ``cases`` (one drug); options as :func:`dialyzability.api.fit`."""
    import json

    from dialyzability import __version__
    from dialyzability.inference.sampling import kinetics_for, sample, sampler_config
    from dialyzability.results.quantities import HDI_PROB

    config = sampler_config(draws, tune, chains, seed, sampler, target_accept)
    built = build_pooled_model(cases, kinetics=kinetics_for(config["sampler"]))
    idata = sample(built.model, config, progressbar)
    idata.attrs.update(
        {
            "dialyzability_version": __version__,
            "hdi_prob": HDI_PROB,
            "cases": json.dumps({c.id: c.raw for c in cases}, default=str),
            "drug_model": built.drug.model_dump_json(),
            "priors": json.dumps(built.drug.prior_table()),
            "config": json.dumps(config),
            "pooled_tau_scales": json.dumps(TAU_SCALE),
        }
    )
    return PooledFit(idata, cases, built.drug, config, built.modalities, built.kidney_classes)
