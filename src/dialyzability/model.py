"""The PyMC model of one case (DESIGN §4).

:func:`build_model` turns a :class:`~dialyzability.case.Case` and its
:class:`~dialyzability.drugs.DrugModel` into a :class:`CaseModel`, which *holds* a ``pm.Model``
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
from dataclasses import dataclass, field

import numpy as np

from .case import Case, Time
from .drugs import DrugModel, load_drug
from .kinetics import Design, solve


@dataclass
class Events:
    """Event times of a case: fixed values and latent ranges, with labels."""

    labels: list[str] = field(default_factory=list)
    times: list[Time] = field(default_factory=list)
    durations: dict[int, tuple[int, Time]] = field(default_factory=dict)

    def add(self, label: str, time: Time) -> int:
        self.labels.append(label)
        self.times.append(time)
        return len(self.labels) - 1

    def add_end(self, label: str, start: int, end: Time | None, duration: Time | None) -> int:
        """An end event: its own time (``end``), or ``start`` + ``duration``."""
        if end is not None:
            return self.add(label, end)
        assert duration is not None
        index = self.add(label, self.times[start] + duration)
        self.durations[index] = (start, duration)
        return index

    def _name(self, i: int) -> str | None:
        """Name of the latent variable behind event ``i`` (its time or its duration), if any."""
        if i in self.durations:
            duration = self.durations[i][1]
            return (
                f"t_{self.labels[i].removesuffix('_end')}_duration" if duration.is_range else None
            )
        return f"t_{self.labels[i]}" if self.times[i].is_range else None

    def latent(self) -> dict[str, tuple[float, float]]:
        """The timings that are unknown inside a range: variable name → (lo, hi) in hours."""
        out = {}
        for i in range(len(self.labels)):
            name = self._name(i)
            if name is not None:
                t = self.durations[i][1] if i in self.durations else self.times[i]
                out[name] = (t.lo, t.hi)
        return out

    def constants(self) -> np.ndarray:
        """Per event, the known number behind it (h): its time, or for an end given by a known
        duration that duration; 0 where the number is latent."""
        out = np.zeros(len(self.labels))
        for i, t in enumerate(self.times):
            if self._name(i) is None:
                out[i] = self.durations[i][1].lo if i in self.durations else t.lo
        return out

    def resolve(self, values: dict, xp=np, constants=None) -> list:
        """Event times (h) given values of the latent timings.

        ``values`` maps the names of :meth:`latent` to scalars, arrays of draws or tensors; the
        result is a list with one entry per event, broadcasting like the values. ``constants``
        (default :meth:`constants`) may be a tensor, so that a compiled model takes the known
        times as data.
        """
        constants = self.constants() if constants is None else constants
        times: list = []
        for i in range(len(self.times)):
            name = self._name(i)
            value = values[name] if name is not None else constants[i]
            if i in self.durations:
                value = times[self.durations[i][0]] + value
            times.append(value)
        return times


def case_events(case: Case) -> tuple[Events, Design, dict[str, object]]:
    """The events of a case and the :class:`Design` that indexes them.

    Events: ``first`` (earliest possible time of anything) and ``last`` (latest), doses, levels,
    urine windows, sessions. Windows: each urine collection, each session, and the whole
    course (first to last).
    """
    ev = Events()
    all_times = [d.time_h for d in case.doses] + [c.time_h for c in case.concentrations]
    for w in [*case.urine, *case.sessions]:
        all_times += [w.start_h, w.end]
    first = ev.add("first", Time(lo=min(t.lo for t in all_times), hi=min(t.lo for t in all_times)))
    last = ev.add("last", Time(lo=max(t.hi for t in all_times), hi=max(t.hi for t in all_times)))
    doses = [ev.add(f"dose{i}", d.time_h) for i, d in enumerate(case.doses, 1)]
    levels = [ev.add(f"level{i}", c.time_h) for i, c in enumerate(case.concentrations, 1)]
    urine = []
    for i, u in enumerate(case.urine, 1):
        s = ev.add(f"urine{i}_start", u.start_h)
        urine.append((s, ev.add_end(f"urine{i}_end", s, u.end_h, u.duration_h)))
    sessions = []
    for i, x in enumerate(case.sessions, 1):
        s = ev.add(f"session{i}_start", x.start_h)
        sessions.append((s, ev.add_end(f"session{i}_end", s, x.end_h, x.duration_h)))
    modalities = case.modalities
    design = Design(
        n_events=len(ev.labels),
        dose_event=tuple(doses),
        dose_amount=tuple(d.amount for d in case.doses),
        dose_oral=tuple(d.route == "oral" for d in case.doses),
        session_start=tuple(s for s, _ in sessions),
        session_end=tuple(e for _, e in sessions),
        session_modality=tuple(modalities.index(x.modality) for x in case.sessions),
        windows=(*urine, *sessions, (first, last)),
        samples=tuple(levels),
        initial_event=first if not case.doses else -1,
        labels=tuple(ev.labels),
    )
    index = {
        "urine": list(range(len(urine))),
        "sessions": list(range(len(urine), len(urine) + len(sessions))),
        "course": len(urine) + len(sessions),
    }
    return ev, design, index


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


def _observations(case: Case) -> dict[str, list[int]]:
    """Which levels are quantified and which below the LLOQ, and which sessions have a
    measured recovery (indices into the case's lists)."""
    levels = case.concentrations
    return {
        "quantified": [i for i, c in enumerate(levels) if not c.below_lloq],
        "censored": [i for i, c in enumerate(levels) if c.below_lloq],
        "measured": [i for i, s in enumerate(case.sessions) if s.amount is not None],
    }


def model_data(case: Case, drug: DrugModel) -> dict[str, np.ndarray]:
    """Every number of the case that the model uses, by name (canonical units).

    The model takes these as data (``pm.Data``), so that one compiled model serves every case
    of the same :func:`structure` (see :mod:`dialyzability.compiled`). Logs are taken here.

    Returns
    -------
    dict
        ``event_constants`` (h, :meth:`Events.constants`), ``latent_lo``/``latent_hi`` (h, the
        ranges of the latent timings), ``dose_amount`` (mg), ``log_weight`` (log kg, if known),
        ``cl_mean``/``cl_chol`` (:func:`clearance_prior` of the case's kidney function),
        ``log_a0_guess`` (log mg, cases without a dose), ``level_log_y`` and
        ``level_log_lloq`` (log mg/L), ``urine_log_y`` and ``effluent_log_y`` (log mg).
    """
    ev, _, _ = case_events(case)
    obs = _observations(case)
    latent = ev.latent()
    data = {
        "event_constants": ev.constants(),
        "latent_lo": np.array([lo for lo, _ in latent.values()], dtype=float),
        "latent_hi": np.array([hi for _, hi in latent.values()], dtype=float),
        "dose_amount": np.array([d.amount for d in case.doses], dtype=float),
    }
    mean, chol = clearance_prior(drug, case.kidney_function)
    data["cl_mean"], data["cl_chol"] = mean, chol
    if case.patient.weight is not None:
        data["log_weight"] = np.array(math.log(case.patient.weight))
    if not case.doses:
        measured = [c.value for c in case.concentrations if c.value and not c.below_lloq]
        c_ref = measured[0] if measured else (drug.therapeutic_high or 1.0)
        guess = c_ref * drug.priors.volume.median * (case.patient.weight or drug.weight.median)
        data["log_a0_guess"] = np.array(math.log(guess))
    levels = case.concentrations
    data["level_log_y"] = np.log([levels[i].value for i in obs["quantified"]])
    data["level_log_lloq"] = np.log([levels[i].lloq for i in obs["censored"]])
    data["urine_log_y"] = np.log([u.recovered for u in case.urine])
    data["effluent_log_y"] = np.log([case.sessions[i].amount for i in obs["measured"]])
    return {k: np.asarray(v, dtype=float) for k, v in data.items()}


def structure(case: Case) -> dict:
    """What fixes the shape of a case's model: the normalised case with every number replaced
    by ``#`` (a known time stays one ``#``, a range becomes ``["#", "#"]``; presence, flags,
    routes, modalities, matrices and the kidney class stay). Two cases with the same structure
    differ only in :func:`model_data`."""

    def blank(obj):
        if isinstance(obj, bool) or obj is None or isinstance(obj, str):
            return obj
        if isinstance(obj, int | float):
            return "#"
        if isinstance(obj, list):
            return [blank(v) for v in obj]
        if isinstance(obj, dict):
            return {k: blank(v) for k, v in obj.items()}
        return repr(type(obj))

    out = blank(case.to_json())
    for key in ("id", "reference", "doi", "clock", "notes"):  # free text
        out.pop(key, None)
    return out


def _kernel_solve(times, design: Design, volume, cl, cl_ectr, ka, f, a0, dose_amount) -> dict:
    """:func:`~dialyzability.kinetics.solve`'s ``conc`` and ``auc`` by the compiled kernel (a
    batch of one case)."""
    import pytensor.tensor as pt

    from .kernel import solve_op
    from .kinetics import BatchDesign

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
        (:mod:`dialyzability.kernel`; fast, every backend but JAX); ``"graph"``: as PyTensor
        array expressions (:func:`~dialyzability.kinetics.solve`; any backend, JAX included).
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
