"""The Stan peer of the pooled model: data for ``pooled.stan`` from a batch of cases
(:class:`~dialyzability.design.Batch`), and a check that its log density equals the PyMC model's
(``build_model(cases, population="hierarchical")``) up to a constant.

    python benchmarks/peers/stan_pooled.py                      # check
    python benchmarks/peers/stan_pooled.py --sample --cases 10  # time a fit of 10 cases
    python benchmarks/peers/stan_pooled.py --build              # compile only

The check compares the two log densities (unconstrained space, with Jacobians) at ``--points``
random points for batches of ``simulate_population(n, seed)`` with n = 3 and 10, and for the
published cases of ``data/cases`` pooled by drug, and prints per batch the largest deviation of
the difference (Stan - PyMC) from its mean. ``--sample`` fits ``simulate_population(n, seed=n)``
(``--cases n``; the sampler's seed is ``--seed``, default n) and prints one JSON line: build and
sampling wall times, divergences, R-hat max and min bulk ESS over every population and
case-level parameter (mu_*, tau_*, and per case volume, cl_renal, cl_nonrenal, cl_ectr, ka).

Needs pystan 3 (``pip install pystan``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import _peer

from dialyzability.design import Batch, make_batch
from dialyzability.io.drugs import clearance_prior, error_prior, load_drug
from dialyzability.model.build import A0_SIGMA, TAU_SCALE

PROGRAM = Path(__file__).with_name("pooled.stan")
CASE_PROGRAM = Path(__file__).with_name("case.stan")
ROOT = Path(__file__).resolve().parents[2]
KINDS = ("level", "urine", "effluent")
#: the variables of the convergence report of --sample
REPORTED = [
    "mu_volume",
    "mu_cl_renal",
    "mu_cl_nonrenal",
    "mu_ka",
    "mu_cl_ectr",
    "tau_volume",
    "tau_cl_renal",
    "tau_cl_nonrenal",
    "tau_cl_ectr",
    "tau_ka",
    "volume",
    "cl_renal",
    "cl_nonrenal",
    "cl_ectr",
    "ka",
]


def functions_block(program: Path) -> str:
    text = program.read_text()
    return text[text.index("functions {") : text.index("\ndata {")]


def centring(batch: Batch) -> dict:
    """Which coordinates of each case the hierarchical model samples centred, as
    ``build_model(..., population="hierarchical")`` chooses them (a copy of its rule: keep in
    step with build.py, or the log-density check fails): none, every per-case parameter is
    non-centred (the flags let the peer follow a partly centred parametrisation)."""
    c_n, m = batch.n_cases, len(batch.modalities)
    return {
        "volume_centred": np.zeros(c_n, int),
        "clearance_centred": np.zeros((c_n, 2), int),
        "ectr_centred": np.zeros((c_n, m), int),
    }


def stan_data(batch: Batch) -> dict:
    """The data block of ``pooled.stan`` (1-based indices) from a batch."""
    drug, kin, data, c_n = batch.drug, batch.kinetics, batch.data, batch.n_cases
    p = drug.priors
    rows, cols = batch.timing_scatter()
    n_windows = [w["course"] + 1 for w in batch.windows]
    lv, q = batch.levels, ~batch.levels.censored
    nus, scales = zip(*(error_prior(drug.errors[k]) for k in KINDS), strict=True)
    # population means of the clearances: the drug's bivariate prior, CL_NR shared, as the
    # marginal of mu_NR and the conditional of each class's mu_R (as in build.py)
    priors = [clearance_prior(drug, k) for k in batch.kidney_classes]
    cov = [chol @ chol.T for _, chol in priors]
    s_nr = math.sqrt(cov[0][1, 1])
    c = cov[0][0, 1]
    sessions = [
        kin.session_modality[c, batch.windows[c]["sessions"].index(w)] + 1
        for c, w in zip(batch.effluent.case, batch.effluent.where, strict=True)
    ]
    return {
        "C": c_n,
        "N": kin.n_events,
        "n_events": [len(ev.labels) for ev in batch.events],
        "event_time": data["event_time"],
        "T": len(batch.timings),
        "timing_lo": data["timing_lo"],
        "timing_hi": data["timing_hi"],
        "K": len(rows),
        "scatter_case": rows // kin.n_events + 1,
        "scatter_event": rows % kin.n_events + 1,
        "scatter_timing": cols + 1,
        "D": kin.dose_event.shape[1],
        "n_doses": [len(c.doses) for c in batch.cases],
        "dose_event": kin.dose_event + 1,
        "dose_amount": data["dose_amount"],
        "dose_oral": kin.dose_oral.astype(int),
        "S": kin.session_start.shape[1],
        "n_sessions": [len(c.sessions) for c in batch.cases],
        "session_start": kin.session_start + 1,
        "session_end": kin.session_end + 1,
        "session_modality": kin.session_modality + 1,
        "W": kin.windows.shape[1],
        "n_windows": n_windows,
        "windows": kin.windows + 1,
        "P": kin.samples.shape[1],
        "n_samples": [len(c.concentrations) for c in batch.cases],
        "samples": kin.samples + 1,
        "initial_event": kin.initial_event + 1,
        "Q": int(q.sum()),
        "level_case": lv.case[q] + 1,
        "level_sample": lv.where[q] + 1,
        "level_log_y": data["level_log_y"][q],
        "B": int((~q).sum()),
        "censored_case": lv.case[~q] + 1,
        "censored_sample": lv.where[~q] + 1,
        "censored_log_lloq": data["level_log_y"][~q],
        "U": len(batch.urine),
        "urine_case": batch.urine.case + 1,
        "urine_window": batch.urine.where + 1,
        "urine_log_y": data["urine_log_y"],
        "E": len(batch.effluent),
        "effluent_case": batch.effluent.case + 1,
        "effluent_window": batch.effluent.where + 1,
        "effluent_modality": np.array(sessions, dtype=int),
        "effluent_log_y": data["effluent_log_y"],
        "nu": list(nus),
        "scale": list(scales),
        **centring(batch),
        "n_oral": int(batch.oral.sum()),
        "oral_case": np.flatnonzero(batch.oral) + 1,
        "n_weight_missing": int(batch.weight_missing.sum()),
        "weight_missing_case": np.flatnonzero(batch.weight_missing) + 1,
        "n_no_dose": int(batch.no_dose.sum()),
        "no_dose_case": np.flatnonzero(batch.no_dose) + 1,
        "log_weight_known": data["log_weight"],
        "weight_mu": math.log(drug.weight.median),
        "weight_sd": drug.weight.sigma,
        "log_a0_guess": data["log_a0_guess"],
        "a0_sd": A0_SIGMA,
        "G": len(batch.kidney_classes),
        "kidney": batch.kidney + 1,
        "m_nonrenal": float(priors[0][0][1]),
        "s_nonrenal": s_nr,
        "cov_cl": c,
        "m_renal": [float(m[0]) for m, _ in priors],
        "s_renal": [math.sqrt(v[0, 0] - c**2 / s_nr**2) for v in cov],
        "volume_mu": p.volume.mu,
        "volume_sd": p.volume.sigma,
        "ka_mu": p.ka.mu,
        "ka_sd": p.ka.sigma,
        "f_alpha": p.bioavailability.alpha,
        "f_beta": p.bioavailability.beta,
        "M": len(batch.modalities),
        "ectr_mu": [drug.ectr[m].mu for m in batch.modalities],
        "ectr_sd": [drug.ectr[m].sigma for m in batch.modalities],
        **{f"tau_{name}_scale": scale for name, scale in TAU_SCALE.items()},
    }


def simulated(n: int, seed: int) -> list:
    from dialyzability.io.case import parse_case
    from dialyzability.simulate import simulate_population

    raws, _, _ = simulate_population(n, seed=seed)
    return [parse_case(r, r["id"]) for r in raws]


def check_batch(cases, points: int = 10, seed: int = 0) -> tuple[float, float, float]:
    """(max deviation of Stan - PyMC from its mean, mean difference, max |PyMC log density|)
    over ``points`` random unconstrained points of the batch's hierarchical model."""
    from dialyzability.model.build import build_model

    batch = make_batch(list(cases), load_drug(cases[0].drug))
    posterior = _peer.build(PROGRAM, stan_data(batch))
    model = build_model(batch, population="hierarchical").model
    diffs, values = _peer.check(posterior, model, points, seed)
    return _peer.deviation(diffs), float(diffs.mean()), float(np.abs(values).max())


def check_all(points: int) -> float:
    from dialyzability.io.case import load_case

    if functions_block(PROGRAM) != functions_block(CASE_PROGRAM):
        raise SystemExit("pooled.stan and case.stan have different functions blocks")
    batches = {}
    for n, seed in ((3, 1), (3, 2), (10, 1), (10, 2)):
        batches[f"simulate_population({n}, seed={seed})"] = simulated(n, seed)
    published = [load_case(p) for p in sorted((ROOT / "data" / "cases").glob("*.toml"))]
    for drug in sorted({c.drug for c in published}):
        batches[f"published {drug}"] = [c for c in published if c.drug == drug]
    worst = 0.0
    print(f"{'batch':<36} {'cases':>5} {'max |dev|':>10} {'mean diff':>14} {'max |logp|':>11}")
    for name, cases in batches.items():
        dev, mean, scale = check_batch(cases, points)
        worst = max(worst, dev)
        print(f"{name:<36} {len(cases):>5} {dev:>10.2e} {mean:>14.3e} {scale:>11.4g}", flush=True)
    print(f"max |(Stan - PyMC) - mean| over {len(batches)} batches x {points} points: {worst:.2e}")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10, help="--sample: simulated cases")
    _peer.add_sampling_arguments(parser)
    parser.set_defaults(seed=None)
    args = parser.parse_args()
    n = args.cases
    if args.build:
        cases = simulated(n, seed=n)
        _peer.build(PROGRAM, stan_data(make_batch(cases, load_drug(cases[0].drug))))
        return
    if not args.sample:
        sys.exit(0 if check_all(args.points) < 1e-8 else 1)
    args.seed = n if args.seed is None else args.seed
    cases = simulated(n, seed=n)
    batch = make_batch(cases, load_drug(cases[0].drug))
    fit, times = _peer.sample(PROGRAM, stan_data(batch), args)
    _peer.print_json({"cases": n, **times, **_peer.diagnostics(fit, REPORTED)})


if __name__ == "__main__":
    main()
