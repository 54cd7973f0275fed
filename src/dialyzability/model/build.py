"""The PyMC model of one case (DESIGN §4).

:func:`build_model` turns a :class:`~dialyzability.io.case.Case` and its
:class:`~dialyzability.io.drugs.DrugModel` into a :class:`CaseModel`, which *holds* a ``pm.Model``
(composition, not a subclass) together with the case's event structure.

Parameters (all positive ones on the log scale, non-centred):

* ``volume`` = V/kg × weight; ``cl_total`` (normal kidneys) = CL_70 × (weight/70)^0.75
  (allometric scaling; Holford NHG, Clin Pharmacokinet 1996;30:329-332);
* ``cl_renal`` = fe × cl_total × kidney factor (by ``kidney_function``), ``cl_nonrenal`` =
  (1 − fe) × cl_total, sampled jointly on the log scale (:func:`clearance_prior`);
* ``cl_ectr``, one per modality; ``ka``; ``bioavailability`` (only with oral doses);
* every time given as a range is uniform on it; without a weight, weight is latent; without a
  dose, the amount in the body at the first event (``a0``) is latent.

Observations:

* levels: log-normal with proportional error; levels below the LLOQ contribute P(C < LLOQ)
  (censoring, Beal SL, J Pharmacokinet Pharmacodyn 2001;28:481-504, method M3);
* urine amounts: log-normal around cl_renal × AUC(urine window);
* effluent recoveries: log-normal around cl_ectr × AUC(session).

The error SD of each kind is shared by its observations and integrated out analytically under an
informative prior (:func:`error_prior`, :func:`log_marginal_t`); censored levels use the
Student-t marginal of each level on its own.
Sessions without a recovery still act on the kinetics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dialyzability.design import Design, Events, _observations, case_events, model_data
from dialyzability.io.case import Case
from dialyzability.io.drugs import DrugModel, error_prior, load_drug
from dialyzability.pk.closed_form import solve


@dataclass
class CaseModel:
    """A case's PyMC model with the structure needed to read it back.

    Attributes
    ----------
    case, drug
        What the model was built from.
    model
        The ``pm.Model``.
    events, design, windows
        Event labels and times, the kinetics design, and which windows are urine collections,
        sessions and the whole course.
    latent_times
        Names of the free variables that are timings, with their ranges (h).
    """

    case: Case
    drug: DrugModel
    model: object
    events: Events
    design: Design
    windows: dict[str, object]
    latent_times: dict[str, tuple[float, float]]


def _lognormal(pm, name, prior, shift=0.0, dims=None, shape=None):
    """Non-centred log-normal: exp(log(median) + shift + sigma z), z ~ N(0, 1)."""
    z = pm.Normal(f"{name}_z", 0.0, 1.0, dims=dims, shape=shape)
    return pm.math.exp(math.log(prior.median) + shift + prior.sigma * z)


def log_marginal_t(log_y, mu, nu: float, scale: float, n: int | None = None):
    """Log density of observations y (log-normal, shared σ integrated out; see error_prior).

    With r = log y − mu (n values) and σ² ~ InvGamma(ν/2, ν s²/2), the marginal of r is the
    multivariate Student-t with ν degrees of freedom, location 0 and scale s² I:

        log p = lnΓ((ν + n)/2) − lnΓ(ν/2) − (n/2) log(ν π s²) − ((ν + n)/2) log(1 + Σr²/(ν s²))

    minus Σ log y for the change of variable from log y to y. ``log_y`` may be data (a shared
    variable); then ``n`` gives its length.
    """
    import pytensor.tensor as pt

    n = len(log_y) if n is None else n
    r = log_y - mu
    const = (
        math.lgamma((nu + n) / 2) - math.lgamma(nu / 2) - n / 2 * math.log(nu * math.pi * scale**2)
    )
    return const - (nu + n) / 2 * pt.log1p((r**2).sum() / (nu * scale**2)) - log_y.sum()


def _kernel_solve(times, design: Design, volume, cl, cl_ectr, ka, f, a0, dose_amount) -> dict:
    """:func:`~dialyzability.pk.closed_form.solve`'s ``conc`` and ``auc`` by the compiled kernel (a
    batch of one case)."""
    import pytensor.tensor as pt

    from dialyzability.design import BatchDesign
    from dialyzability.pk.kernel import solve_op

    def one(x):
        return pt.reshape(pt.as_tensor_variable(x, dtype="float64"), (1,))

    amounts = dose_amount[None, :] if design.dose_event else pt.zeros((1, 1))
    out = solve_op(
        times[None, :],
        BatchDesign.stack([design]),
        one(volume),
        one(cl),
        cl_ectr[None, :],
        one(ka),
        one(f),
        one(a0),
        amounts,
    )
    return {"conc": out["conc"][0, : len(design.samples)], "auc": out["auc"][0]}


def build_model(case: Case, drug: DrugModel | None = None, kinetics: str = "kernel") -> CaseModel:
    """Build the PyMC model of one case (see the module docstring).

    Every number of the case enters as data (:func:`model_data`); the rest of the graph
    depends only on the case's :func:`structure` and the drug model.

    Parameters
    ----------
    case
        A validated case.
    drug
        Its drug model; loaded from ``case.drug`` when not given.
    kinetics
        ``"kernel"``: the kinetics as one compiled operation with its hand-written gradient
        (:mod:`dialyzability.pk.kernel`; fast, every backend but JAX); ``"graph"``: as PyTensor
        array expressions (:func:`~dialyzability.pk.closed_form.solve`; any backend, JAX included).
        Both give the same log density.
    """
    import pymc as pm
    import pytensor.tensor as pt

    drug = drug or load_drug(case.drug)
    ev, design, windows = case_events(case)
    obs = _observations(case)
    modalities = case.modalities
    coords = {"modality": modalities} if modalities else {}
    with pm.Model(coords=coords) as model:
        data = {
            name: pm.Data(name, value, shape=value.shape)
            for name, value in model_data(case, drug).items()
        }
        # body size
        if case.patient.weight is not None:
            log_weight = data["log_weight"]
        else:
            z_w = pm.Normal("weight_z", 0.0, 1.0)
            log_weight = math.log(drug.weight.median) + drug.weight.sigma * z_w
            pm.Deterministic("weight", pt.exp(log_weight))
        log_w70 = log_weight - math.log(70.0)
        p = drug.priors
        volume = pm.Deterministic(
            "volume", _lognormal(pm, "volume", p.volume) * pt.exp(log_weight)
        )  # L/kg x kg
        # renal and non-renal clearance as one bivariate log-normal (see clearance_prior)
        z_cl = pm.Normal("clearance_z", 0.0, 1.0, shape=2)
        log_cl = data["cl_mean"] + 0.75 * log_w70 + pt.dot(data["cl_chol"], z_cl)
        cl_renal = pm.Deterministic("cl_renal", pt.exp(log_cl[0]))
        cl_nonrenal = pm.Deterministic("cl_nonrenal", pt.exp(log_cl[1]))
        ka = pm.Deterministic("ka", _lognormal(pm, "ka", p.ka))
        oral = any(d.route == "oral" for d in case.doses)
        f = (
            pm.Beta("bioavailability", p.bioavailability.alpha, p.bioavailability.beta)
            if oral
            else 1.0
        )
        if modalities:
            mu = np.array([math.log(drug.ectr[m].median) for m in modalities])
            sd = np.array([drug.ectr[m].sigma for m in modalities])
            z = pm.Normal("cl_ectr_z", 0.0, 1.0, dims="modality")
            cl_ectr = pm.Deterministic("cl_ectr", pt.exp(mu + sd * z), dims="modality")
        else:
            cl_ectr = pt.zeros(1)

        # event times: fixed, or uniform on the reported range
        values = {
            name: pm.Uniform(name, data["latent_lo"][i], data["latent_hi"][i])
            for i, name in enumerate(ev.latent())
        }
        times_v = pt.stack(ev.resolve(values, xp=pt, constants=data["event_constants"]))

        a0 = 0.0
        if not case.doses:
            z_a0 = pm.Normal("a0_z", 0.0, 1.0)
            a0 = pm.Deterministic("a0", pt.exp(data["log_a0_guess"] + 1.5 * z_a0))

        cl = cl_renal + cl_nonrenal
        if kinetics == "graph":
            out = solve(
                times_v,
                design,
                volume,
                cl,
                cl_ectr,
                ka,
                f,
                a0,
                xp=pt,
                dose_amount=data["dose_amount"],
            )
        else:
            out = _kernel_solve(
                times_v, design, volume, cl, cl_ectr, ka, f, a0, data["dose_amount"]
            )
        auc = out["auc"]
        pm.Deterministic("removed_renal", cl_renal * auc[windows["course"]])
        if case.sessions:
            cl_s = cl_ectr[np.array(design.session_modality)]
            pred_effluent = cl_s * auc[np.array(windows["sessions"])]
            pm.Deterministic("pred_effluent", pred_effluent)  # mg, every session
            pm.Deterministic("removed_ectr", pred_effluent.sum())

        if case.concentrations:
            pm.Deterministic("pred_level", out["conc"])  # mg/L at each level's time
            log_conc = pt.log(pt.maximum(out["conc"], 1e-12))
            nu, scale = error_prior(drug.errors["level"])
            if obs["quantified"]:
                pm.Potential(
                    "obs_level",
                    log_marginal_t(
                        data["level_log_y"],
                        log_conc[obs["quantified"]],
                        nu,
                        scale,
                        len(obs["quantified"]),
                    ),
                )
            if obs["censored"]:
                dist = pm.StudentT.dist(nu=nu, mu=log_conc[obs["censored"]], sigma=scale)
                pm.Potential("obs_level_below_lloq", pm.logcdf(dist, data["level_log_lloq"]).sum())
        if case.urine:
            pred = pm.Deterministic("pred_urine", cl_renal * auc[np.array(windows["urine"])])
            nu, scale = error_prior(drug.errors["urine"])
            pm.Potential(
                "obs_urine",
                log_marginal_t(data["urine_log_y"], pt.log(pred), nu, scale, len(case.urine)),
            )
        if obs["measured"]:
            nu, scale = error_prior(drug.errors["effluent"])
            pm.Potential(
                "obs_effluent",
                log_marginal_t(
                    data["effluent_log_y"],
                    pt.log(pred_effluent[obs["measured"]]),
                    nu,
                    scale,
                    len(obs["measured"]),
                ),
            )
    return CaseModel(case, drug, model, ev, design, windows, ev.latent())
