"""One PyMC model for a batch of N >= 1 cases of one drug (DESIGN §4-5).

:func:`build_model` turns a :class:`~dialyzability.design.Batch` into a :class:`Model`, which
*holds* a ``pm.Model`` (composition, not a subclass). Each case has its own parameters; above
them sits a *population layer*:

* ``"fixed"`` (a single-case fit, or several cases fitted side by side without pooling): each
  case's prior is the drug model's, scaled by weight and kidney function;
* ``"hierarchical"`` (a pooled fit): population means with the drug model's priors and
  half-normal between-case SDs (:data:`TAU_SCALE`; Gelman A. Bayesian Analysis 2006;1:515-534).

Per case (log scale):

* log V = log(V/kg) + log weight; V/kg ~ the drug's log-normal (fixed) or
  N(mu_volume, tau_volume) (hierarchical);
* (log CL_R, log CL_NR) of a 70-kg adult ~ the bivariate normal of
  :func:`~dialyzability.io.drugs.clearance_prior` for the case's kidney class (fixed), or
  N((mu_cl_renal[kidney], mu_cl_nonrenal), diag(tau²)) with the population means bivariate
  under the same prior (hierarchical); both scaled by (weight/70)^0.75 (allometry; Holford NHG,
  Clin Pharmacokinet 1996;30:329-332);
* log CL_ECTR per modality, log ka alike (where a session reports its blood flow, CL_ECTR =
  Q (1 − e^(−K/Q)) with K under that prior and Q the plasma flow Q_B (1 − Hct), so that it never
  exceeds the plasma flow: Renkin EM, Am J Physiol 1959;197:1205-1210; Michaels AS, Trans Am
  Soc Artif Intern Organs 1966;12:387-392); bioavailability ~ Beta (oral doses only); weight
  latent where not reported; the body burden ``a0`` latent for a case without a dose; every
  timing given as a range uniform on it.

Geometry (measured with ``benchmarks/geometry.py``: leapfrog steps per draw, step size and the
posterior correlations of the sampler's coordinates, 4 chains x 1000 + 1000, nutpie).

*Single case.* What a case's levels identify is its elimination slope k = CL/V and its volume
(through the body burden), not CL and V separately, so in the coordinates of log CL and log V
the posterior is a ridge. The clearance pair is sampled in coordinates of log k: with δ = log V
minus its prior location, the sampler's coordinate u of the pair is

    log CL = loc + L u + δ·1,    u ~ N(−δ L⁻¹1, I)

the same prior as log CL = loc + L z, z ~ N(0, I) (a change of variables with unit Jacobian),
but log k = log CL − log V no longer moves when V does. Founding case: 57 leapfrog steps per
draw (step size 0.16) against 75 (0.13) with z.

*Pooled.* Here the same shift divides δ by the between-case SD (u ~ N(−δ/tau, 1)) and couples
every case to tau_cl_renal: at 10 simulated cases 94 steps, 34 divergences, R-hat 1.05. What
was measured to help: population means sampled centred (standardised, the conditional prior of
mu_cl_renal given mu_cl_nonrenal gave them a posterior correlation of −0.93; centred, R-hat
1.020 -> 1.011 at 10 cases). What was measured not to help: centring a case's V (the levels of
an oral dose identify V/F; funnel at small tau_volume), its CL_NR (weakly identified by one
case; funnel at small tau_cl_nonrenal), its CL_R in log k where urine identifies it (36 steps
per draw but divergences at small tau_cl_renal), its CL_ECTR where an effluent recovery
identifies it (83 against 81 steps at 10 cases, and 860 divergences pooling the three published
lithium cases, whose tau_cl_ectr the data cannot bound away from 0). So every per-case
parameter is non-centred (Betancourt M, Girolami M, arXiv:1312.0906). At 10 simulated cases:
81 steps per draw, 0 divergences, R-hat 1.011, minimum bulk ESS 345; at 50 cases (with CL_ECTR
centred; to be re-measured): 100 steps, R-hat 1.012, minimum bulk ESS 365, the largest
correlations (0.8-0.85) between each case's log V and log CL_R coordinates: the per-case ridge
of the single-case model, which in the hierarchical layer still awaits a parametrisation that
does not couple the cases through tau.

Observations (:mod:`dialyzability.model.observations`) are observed variables: levels log-normal
with proportional error (plasma and serum alike, both C_p; a whole-blood level around B:P · C_p,
with the blood-to-plasma ratio B:P a parameter of the batch, log-normal from the drug model's
``priors.blood_plasma_ratio``, present only when a case has a blood level), censored below the LLOQ
through ``pm.Censored``; a post-filter level (a level's ``site``: drawn from the venous line of the
circuit during its session) around C_p (1 − CL_ECTR/Q), Q the session's plasma flow Q_B (1 − Hct)
(Hct 0 when not reported, as for the bound), its error prior and error SD those of the levels (the
registry, :data:`~dialyzability.design.OBSERVATIONS`, says why it is a level; net ultrafiltration
across the filter, which would add Q_UF · C_out/C_in to the clearance, is not modelled: the case
format has no ultrafiltration flow); a pre-filter level is an ordinary level; urine and effluent
amounts log-normal around CL_R × AUC and CL_ECTR × AUC; effluent samples log-normal around CL_ECTR
× C_p(t) / Q_E, Q_E the session's effluent flow. The error SD of each kind is shared by a case's
observations of that kind and integrated out under its informative prior
(:func:`~dialyzability.io.drugs.error_prior`): a multivariate Student-t per case and kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dialyzability.design import (
    OBSERVATIONS,
    POPULATION_SPREAD,
    RAW,
    Batch,
    make_batch,
    mu_name,
    tau_name,
)
from dialyzability.io.case import Case
from dialyzability.io.drugs import DrugModel, load_drug
from dialyzability.model.observations import density
from dialyzability.pk.structure import Structure

Population = Literal["fixed", "hierarchical"]
#: half-normal scales of the between-case SDs (log scale): a factor of e^0.5 = 1.65 is typical
TAU_SCALE = dict(zip(POPULATION_SPREAD, (0.3, 0.5, 0.5, 0.5, 0.5), strict=True))
#: the sampler's coordinates of the clearance pair (:func:`build_model`)
COORDINATES = ("log_k", "log_cl")
#: SD (log scale) of the latent body burden of a case without a dose, around its guess
A0_SIGMA = 1.5


class PoolError(ValueError):
    """Cases that cannot be modelled together (none, several drugs, ...)."""


@dataclass
class Model:
    """A batch's PyMC model with what is needed to read it back.

    Attributes
    ----------
    batch
        The cases' layout (:class:`~dialyzability.design.Batch`).
    population
        ``"fixed"`` or ``"hierarchical"``.
    model
        The ``pm.Model``.
    """

    batch: Batch
    population: str
    model: object

    @property
    def drug(self) -> DrugModel:
        return self.batch.drug


def check_poolable(cases: list[Case]) -> str:
    """The one drug of ``cases``; raises :class:`PoolError` for none or several."""
    if not cases:
        raise PoolError("no cases to fit")
    drugs = sorted({c.drug for c in cases})
    if len(drugs) > 1:
        raise PoolError(f"cases of several drugs ({', '.join(drugs)}): pool one drug at a time")
    return drugs[0]


def _lower2(chol, z):
    """L z for a batch of 2x2 lower-triangular L (..., 2, 2) and z (..., 2)."""
    import pytensor.tensor as pt

    return pt.stack(
        [chol[..., 0, 0] * z[..., 0], chol[..., 1, 0] * z[..., 0] + chol[..., 1, 1] * z[..., 1]],
        axis=-1,
    )


def _solve_lower2_ones(chol):
    """L⁻¹ 1 for a batch of 2x2 lower-triangular L."""
    import pytensor.tensor as pt

    first = 1.0 / chol[..., 0, 0]
    return pt.stack([first, (1.0 - chol[..., 1, 0] * first) / chol[..., 1, 1]], axis=-1)


def _population(batch: Batch, population: str, log_w70, data: dict):
    """Per-case prior locations and scales: (loc_v, sd_v, loc_cl (C, 2), chol_cl (C, 2, 2),
    loc_ka, sd_ka, loc_ectr (C, M), sd_ectr (M,)), all on the log scale."""
    import pymc as pm
    import pytensor.tensor as pt

    p, drug = batch.drug.priors, batch.drug
    m_ectr = np.array([drug.ectr[m].mu for m in batch.modalities])
    s_ectr = np.array([drug.ectr[m].sigma for m in batch.modalities])
    if population == "fixed":
        loc_cl = data["cl_mean"] + 0.75 * log_w70[:, None]
        ones = pt.ones(batch.n_cases)
        return (
            p.volume.mu * ones,
            p.volume.sigma,
            loc_cl,
            data["cl_chol"],
            p.ka.mu * ones,
            p.ka.sigma,
            pt.as_tensor(m_ectr)[None, :] * ones[:, None],
            s_ectr,
        )
    if population != "hierarchical":
        raise ValueError(f"unknown population layer {population!r}")

    def tau(name):
        return pm.HalfNormal(tau_name(name), TAU_SCALE[name])

    mu_v = pm.Normal(mu_name("volume"), p.volume.mu, p.volume.sigma)
    # population means of (log CL_R by kidney class, log CL_NR): the drug's bivariate prior
    # for every class, CL_NR shared: mu_NR ~ N(m_NR, s_NR), and given it each class's
    # mu_R[k] ~ N(m_R[k] + c (mu_NR - m_NR) / s_NR², s_R[k]² - c² / s_NR²), c the covariance
    # (the conditional normal). Sampled centred: the data identify these means directly.
    from dialyzability.io.drugs import clearance_prior

    priors = [clearance_prior(drug, k) for k in batch.kidney_classes]
    cov = [chol @ chol.T for _, chol in priors]
    m_nr, s_nr = priors[0][0][1], math.sqrt(cov[0][1, 1])
    c = cov[0][0, 1]
    m_r = np.array([m[0] for m, _ in priors])
    s_r = np.array([math.sqrt(v[0, 0] - c**2 / s_nr**2) for v in cov])
    mu_nr = pm.Normal(mu_name("cl_nonrenal"), m_nr, s_nr)
    mu_r = pm.Normal(mu_name("cl_renal"), m_r + c / s_nr**2 * (mu_nr - m_nr), s_r, dims="kidney")
    tau_r, tau_nr = tau("cl_renal"), tau("cl_nonrenal")
    loc_cl = pt.stack([mu_r[batch.kidney], pt.ones(batch.n_cases) * mu_nr], axis=-1)
    loc_cl = loc_cl + 0.75 * log_w70[:, None]
    zero = pt.zeros(batch.n_cases)
    chol = pt.stack(
        [pt.stack([zero + tau_r, zero], -1), pt.stack([zero, zero + tau_nr], -1)], axis=-2
    )
    mu_ka = pm.Normal(mu_name("ka"), p.ka.mu, p.ka.sigma)
    loc_ectr = pt.zeros((batch.n_cases, len(batch.modalities)))
    sd_ectr = 1.0
    if batch.modalities:
        mu_e = pm.Normal(mu_name("cl_ectr"), m_ectr, s_ectr, dims="modality")
        loc_ectr = loc_ectr + mu_e[None, :]
        sd_ectr = tau("cl_ectr")
    return (
        mu_v + 0.0 * zero,
        tau("volume"),
        loc_cl,
        chol,
        mu_ka + 0.0 * zero,
        tau("ka"),
        loc_ectr,
        sd_ectr,
    )


def _structural(structure: Structure, drug: DrugModel, ka, log_w70, volume) -> dict:
    """The parameters a structure adds (:mod:`dialyzability.pk.structure`), each case's own
    under the drug model's priors, non-centred:

    * ``fraction_peripheral`` φ ~ Beta (V2 / Vss), with ``volume_central`` V1 = Vss (1 − φ) and
      ``volume_peripheral`` V2 = Vss φ;
    * ``cl_intercompartmental`` Q: log Q = log Q₇₀ + 0.75 log(weight/70) + σ z (allometry as
      for the clearances);
    * ``lag`` ~ log-normal (h);
    * ``ka_slow``: 1/ka_slow = 1/ka + 1/κ, κ under the prior ``ka_slow``, so that the slow route
      stays slower than the fast one and the two cannot swap labels (its mean absorption time
      is the fast route's plus 1/κ); ``fraction_slow`` ~ Beta.
    """
    import pymc as pm
    import pytensor.tensor as pt

    p = drug.priors
    out = {}

    def lognormal(name, prior, shift=0.0):
        z = pm.Normal(f"{name}{RAW}", 0.0, 1.0, dims="case")
        return pt.exp(prior.mu + shift + prior.sigma * z)

    for name in structure.parameters:
        prior = getattr(p, name)
        if name in ("fraction_peripheral", "fraction_slow"):
            value = pm.Beta(name, prior.alpha, prior.beta, dims="case")
        elif name == "cl_intercompartmental":
            value = pm.Deterministic(name, lognormal(name, prior, 0.75 * log_w70), dims="case")
        elif name == "ka_slow":
            extra = lognormal(name, prior)
            value = pm.Deterministic(name, 1.0 / (1.0 / ka + 1.0 / extra), dims="case")
        else:
            value = pm.Deterministic(name, lognormal(name, prior), dims="case")
        out[name] = value
    if structure.compartments == 2:
        v1, v2 = structure.volumes({"volume": volume, **out})
        pm.Deterministic("volume_central", v1, dims="case")
        pm.Deterministic("volume_peripheral", v2, dims="case")
    return out


def build_model(
    cases: list[Case] | Batch,
    drug: DrugModel | None = None,
    population: Population = "fixed",
    kinetics: str = "kernel",
    coordinates: str = "log_k",
    structure: Structure | None = None,
) -> Model:
    """Build the PyMC model of a batch of cases (see the module docstring).

    Every number of the cases enters as data (:attr:`~dialyzability.design.Batch.data`); the
    rest of the graph depends only on the batch's structure, the drug model and the
    population layer.

    Parameters
    ----------
    cases
        Validated cases of one drug (or their :class:`~dialyzability.design.Batch`).
    drug
        Their drug model; loaded from the cases' drug when not given.
    population
        ``"fixed"`` (each case under the drug model's prior) or ``"hierarchical"`` (pooled).
    kinetics
        ``"kernel"``: the kinetics as one compiled operation with its hand-written gradient
        (:mod:`dialyzability.pk.kernel`; every backend but JAX); ``"graph"``: as PyTensor array
        expressions (:func:`~dialyzability.pk.closed_form.solve_batch`; JAX). Both give the
        same log density.
    coordinates
        The sampler's coordinates (the same prior either way; see the module docstring):
        ``"log_k"``, the measured choice (a single case's clearance pair in coordinates of
        log k), or ``"log_cl"`` (plainly non-centred), the baseline of
        ``benchmarks/geometry.py``; a pooled model's per-case parameters are non-centred
        either way.
    structure
        The structural model (:class:`~dialyzability.pk.structure.Structure`); by default the
        drug model's. The parameters it adds are each case's own, under the drug model's
        priors, in a pooled model too (:func:`_structural`).
    """
    import pymc as pm
    import pytensor.tensor as pt

    if isinstance(cases, Batch):
        batch = cases
    else:
        cases = list(cases)
        name = check_poolable(cases)
        batch = make_batch(cases, drug or load_drug(name))
    drug = batch.drug
    structure = structure or Structure.of(drug)
    c_n = batch.n_cases
    with pm.Model(coords=batch.coords()) as model:
        data = {
            name: pm.Data(name, value, shape=value.shape)
            for name, value in batch.data.items()
            if value.size
        }
        # body size
        log_weight = data["log_weight"]
        missing = np.flatnonzero(batch.weight_missing)
        if len(missing):
            z_w = pm.Normal(f"weight{RAW}", 0.0, 1.0, dims="weight_missing")
            log_weight = pt.set_subtensor(
                log_weight[missing], math.log(drug.weight.median) + drug.weight.sigma * z_w
            )
        pm.Deterministic("weight", pt.exp(log_weight), dims="case")
        log_w70 = log_weight - math.log(70.0)
        loc_v, sd_v, loc_cl, chol_cl, loc_ka, sd_ka, loc_e, sd_e = _population(
            batch, population, log_w70, data
        )

        # volume (L/kg x kg) and the clearance pair in coordinates of log k (module docstring)
        if coordinates not in COORDINATES:
            raise ValueError(f"unknown coordinates {coordinates!r}")
        # V is not centred: with an oral dose of unknown bioavailability a case's levels
        # identify V/F, not V
        log_v = loc_v + log_weight + sd_v * pm.Normal(f"volume{RAW}", 0.0, 1.0, dims="case")
        volume = pm.Deterministic("volume", pt.exp(log_v), dims="case")
        if population == "fixed":
            # the drug's bivariate prior, in coordinates of log k (module docstring)
            shift = (log_v - loc_v - log_weight)[:, None]
            if coordinates == "log_cl":
                shift = pt.zeros((c_n, 1))
            u = pm.Normal(
                f"clearance{RAW}", -shift * _solve_lower2_ones(chol_cl), 1.0, shape=(c_n, 2)
            )
            log_cl = loc_cl + _lower2(chol_cl, u) + shift
        else:
            # independent deviations (chol_cl diagonal), not centred: centring CL_R in log k
            # where urine identifies it halves the leapfrog steps but opens a funnel at small
            # tau_cl_renal (benchmarks/geometry.py)
            sd_cl = pt.stack([chol_cl[:, 0, 0], chol_cl[:, 1, 1]], axis=-1)
            log_cl = loc_cl + sd_cl * pm.Normal(f"clearance{RAW}", 0.0, 1.0, shape=(c_n, 2))
        cl_renal = pm.Deterministic("cl_renal", pt.exp(log_cl[:, 0]), dims="case")
        cl_nonrenal = pm.Deterministic("cl_nonrenal", pt.exp(log_cl[:, 1]), dims="case")
        z_ka = pm.Normal(f"ka{RAW}", 0.0, 1.0, dims="case")
        ka = pm.Deterministic("ka", pt.exp(loc_ka + sd_ka * z_ka), dims="case")
        oral = np.flatnonzero(batch.oral)
        f = pt.ones(c_n)
        if len(oral):
            pb = drug.priors.bioavailability
            f_oral = pm.Beta(f"bioavailability{RAW}", pb.alpha, pb.beta, dims="oral")
            f = pt.set_subtensor(f[oral], f_oral)
        pm.Deterministic("bioavailability", f, dims="case")
        if batch.modalities:
            z_e = pm.Normal(f"cl_ectr{RAW}", 0.0, 1.0, dims=("case", "modality"))
            log_e = loc_e + sd_e * z_e
            cl_ectr = pt.exp(log_e)
            bounded, _ = batch.ectr_bound()
            if bounded.any():
                # a reported blood flow bounds CL_ECTR by the plasma flow Q: CL = Q (1 − e^(−K/Q))
                # (Renkin-Crone / Michaels: K the unbounded clearance, the filter's mass-transfer
                # coefficient, under the drug's prior; CL ≈ K far below Q, CL < Q always)
                q = data["ectr_bound"]
                cl_ectr = pt.where(bounded, -q * pt.expm1(-cl_ectr / q), cl_ectr)
            cl_ectr = pm.Deterministic("cl_ectr", cl_ectr, dims=("case", "modality"))
        else:
            cl_ectr = pt.zeros((c_n, 1))
        no_dose = np.flatnonzero(batch.no_dose)
        a0 = pt.zeros(c_n)
        if len(no_dose):
            z_a0 = pm.Normal(f"a0{RAW}", 0.0, 1.0, dims="no_dose")
            a0 = pt.set_subtensor(
                a0[no_dose], pt.exp(data["log_a0_guess"][no_dose] + A0_SIGMA * z_a0)
            )
        pm.Deterministic("a0", a0, dims="case")

        # event times: known, or uniform on the reported range, scattered into place
        times = data["event_time"]
        if batch.timings:
            timing = pm.Uniform("timing", data["timing_lo"], data["timing_hi"], dims="latent_time")
            rows, cols = batch.timing_scatter()
            flat = pt.inc_subtensor(times.ravel()[rows], timing[cols])
            times = flat.reshape(times.shape)

        params = dict(
            volume=volume,
            cl=cl_renal + cl_nonrenal,
            cl_ectr=cl_ectr,
            ka=ka,
            bioavailability=f,
            a0=a0,
            dose_amount=data.get("dose_amount", pt.zeros((c_n, 1))),
        )
        params |= _structural(structure, drug, ka, log_w70, volume)
        if kinetics not in ("graph", "kernel"):
            raise ValueError(f"unknown kinetics {kinetics!r}")
        out = structure.solve(times, batch.kinetics, params, backend=kinetics)
        conc, auc = out["conc"], out["auc"]

        course = np.array([w["course"] for w in batch.windows])
        pm.Deterministic("removed_renal", cl_renal * auc[np.arange(c_n), course], dims="case")
        preds = {}
        if batch.levels:
            level = conc[batch.levels.case, batch.levels.where]
            blood = np.flatnonzero(batch.level_blood)
            if len(blood):
                # whole blood: C_blood = B:P · C_p, B:P one drug property shared by the
                # batch, log-normal from the drug model (non-centred)
                prior = drug.priors.blood_plasma_ratio
                z_bp = pm.Normal(f"blood_plasma_ratio{RAW}", 0.0, 1.0)
                bp = pm.Deterministic("blood_plasma_ratio", pt.exp(prior.mu + prior.sigma * z_bp))
                level = pt.set_subtensor(level[blood], bp * level[blood])
            post = np.flatnonzero(batch.level_post_filter)
            if len(post):
                # after the filter: C_out = C_in (1 − E), the extraction E = CL_ECTR / Q with Q
                # the session's plasma flow (CL_ECTR = Q · E, mass balance over the filter
                # without net ultrafiltration; Atkinson AJ, Transl Clin Pharmacol
                # 2016;24:153-156). CL_ECTR < Q: a post-filter level's session has a blood
                # flow, so its modality is bounded by the smallest plasma flow (ectr_bound)
                e = cl_ectr[batch.levels.case[post], batch.levels.modality[post]]
                level = pt.set_subtensor(
                    level[post], level[post] * (1.0 - e / data["filter_plasma_flow"])
                )
            preds["level"] = pm.Deterministic("pred_level", level, dims="level")
        if batch.collections:
            c_u = np.array([c for c, _ in batch.collections])
            w_u = np.array([w for _, w in batch.collections])
            preds["urine"] = pm.Deterministic(
                "pred_urine", cl_renal[c_u] * auc[c_u, w_u], dims="urine"
            )
        removed_ectr = pt.zeros(c_n)
        if batch.sessions:
            c_s = np.array([c for c, _ in batch.sessions])
            w_s = np.array([w for _, w in batch.sessions])
            mod = np.concatenate(
                [
                    batch.kinetics.session_modality[i, : len(c.sessions)]
                    for i, c in enumerate(batch.cases)
                ]
            ).astype(int)
            session = pm.Deterministic(
                "pred_session", cl_ectr[c_s, mod] * auc[c_s, w_s], dims="session"
            )
            removed_ectr = pt.inc_subtensor(removed_ectr[c_s], session)
            measured = [
                k
                for k, (c, w) in enumerate(batch.sessions)
                if (c, w) in set(zip(batch.effluent.case, batch.effluent.where, strict=True))
            ]
            if measured:
                preds["effluent"] = pm.Deterministic(
                    "pred_effluent", session[np.array(measured)], dims="effluent"
                )
        if batch.sessions:
            pm.Deterministic("removed_ectr", removed_ectr, dims="case")
        samples = batch.effluent_samples
        if samples:
            # C_E = CL_ECTR · C_p(t) / Q_E (mass balance over the filter; the observation
            # registry), C_p at the sample's own time (a sampling event of the kinetics)
            preds["effluent_sample"] = pm.Deterministic(
                "pred_effluent_sample",
                cl_ectr[samples.case, samples.modality]
                * conc[samples.case, samples.where]
                / data["effluent_sample_flow"],
                dims="effluent_sample",
            )

        for obs in OBSERVATIONS:
            if obs.name in preds:
                density(obs, batch, preds[obs.name], data)
    return Model(batch, population, model)
