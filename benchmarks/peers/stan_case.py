"""The Stan peer of the single-case model: data for ``case.stan`` from a case's
:class:`~dialyzability.design.Batch`, and a check that its log density equals the PyMC model's
(``build_model([case], population="fixed")``) up to a constant.

    python benchmarks/peers/stan_case.py data/cases/lee2020-baclofen.toml  # check (all cases)
    python benchmarks/peers/stan_case.py CASE --only                       # check CASE alone
    python benchmarks/peers/stan_case.py CASE --sample --seed 1            # time a fit
    python benchmarks/peers/stan_case.py CASE --build                      # compile only

The check compares the two log densities (unconstrained space, with Jacobians; PyMC's
``compile_logp(jacobian=True)``, Stan's ``log_prob(adjust_transform=True)``) at ``--points``
random points for the given case, every case in ``data/cases/*.toml`` and a simulated case of
each design of :data:`dialyzability.simulate.DESIGNS`, and prints per case the largest deviation
of the difference (Stan - PyMC) from its mean: 0 up to rounding if they differ by a constant.
``--sample`` prints one JSON line: build and sampling wall times, divergences, bulk ESS of the
ratio CL_ECTR/CL_R, R-hat max (over V, CL_R, CL_NR, ka, CL_ECTR, F, a0, weight, the timings and
the ratio), min bulk ESS over the same.

Needs pystan 3 (``pip install pystan``; it compiles with the system C++ compiler and caches the
compiled program under ``~/.cache/httpstan``).
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
from dialyzability.io.drugs import error_prior
from dialyzability.model.build import A0_SIGMA

PROGRAM = Path(__file__).with_name("case.stan")
ROOT = Path(__file__).resolve().parents[2]
KINDS = ("level", "urine", "effluent")


def session_of(batch: Batch, case: int, window: int) -> int:
    """Index (0-based, within its case) of the session whose window is ``window``."""
    return batch.windows[case]["sessions"].index(window)


def stan_data(batch: Batch) -> dict:
    """The data block of ``case.stan`` (1-based indices) from a one-case batch."""
    if batch.n_cases != 1:
        raise ValueError("case.stan is the single-case model; use stan_pooled.py for a batch")
    case, drug, kin, data = batch.cases[0], batch.drug, batch.kinetics, batch.data
    p = drug.priors
    n = len(batch.events[0].labels)
    rows, cols = batch.timing_scatter()
    d, s = len(case.doses), len(case.sessions)
    w, n_samples = batch.windows[0]["course"] + 1, len(case.concentrations)
    lv, q = batch.levels, ~batch.levels.censored
    nus, scales = zip(*(error_prior(drug.errors[k]) for k in KINDS), strict=True)
    return {
        "N": n,
        "event_time": data["event_time"][0, :n],
        "T": len(batch.timings),
        "timing_lo": data["timing_lo"],
        "timing_hi": data["timing_hi"],
        "K": len(rows),
        "scatter_event": rows % kin.n_events + 1,
        "scatter_timing": cols + 1,
        "D": d,
        "dose_event": kin.dose_event[0, :d] + 1,
        "dose_amount": data["dose_amount"][0, :d],
        "dose_oral": kin.dose_oral[0, :d].astype(int),
        "S": s,
        "session_start": kin.session_start[0, :s] + 1,
        "session_end": kin.session_end[0, :s] + 1,
        "session_modality": kin.session_modality[0, :s] + 1,
        "W": w,
        "windows": kin.windows[0, :w] + 1,
        "L": n_samples,
        "samples": kin.samples[0, :n_samples] + 1,
        "initial_event": int(kin.initial_event[0]) + 1,
        "Q": int(q.sum()),
        "level_sample": lv.where[q] + 1,
        "level_log_y": data["level_log_y"][q],
        "B": int((~q).sum()),
        "censored_sample": lv.where[~q] + 1,
        "censored_log_lloq": data["level_log_y"][~q],
        "U": len(batch.urine),
        "urine_window": batch.urine.where + 1,
        "urine_log_y": data["urine_log_y"],
        "E": len(batch.effluent),
        "effluent_window": batch.effluent.where + 1,
        "effluent_modality": np.array(
            [kin.session_modality[0, session_of(batch, 0, x)] + 1 for x in batch.effluent.where],
            dtype=int,
        ),
        "effluent_log_y": data["effluent_log_y"],
        "nu": list(nus),
        "scale": list(scales),
        "oral": int(batch.oral[0]),
        "weight_missing": int(batch.weight_missing[0]),
        "no_dose": int(batch.no_dose[0]),
        "log_weight_known": float(data["log_weight"][0]),
        "weight_mu": math.log(drug.weight.median),
        "weight_sd": drug.weight.sigma,
        "volume_mu": p.volume.mu,
        "volume_sd": p.volume.sigma,
        "cl_mean": data["cl_mean"][0],
        "cl_chol": data["cl_chol"][0],
        "ka_mu": p.ka.mu,
        "ka_sd": p.ka.sigma,
        "f_alpha": p.bioavailability.alpha,
        "f_beta": p.bioavailability.beta,
        "M": len(batch.modalities),
        "ectr_mu": [drug.ectr[m].mu for m in batch.modalities],
        "ectr_sd": [drug.ectr[m].sigma for m in batch.modalities],
        "log_a0_guess": float(data["log_a0_guess"][0]),
        "a0_sd": A0_SIGMA,
    }


def check_case(case, points: int = 10, seed: int = 0) -> tuple[float, float, float]:
    """(max deviation of Stan - PyMC from its mean, mean difference, max |PyMC log density|)
    over ``points`` random unconstrained points of one case's fixed-population model."""
    from dialyzability.io.drugs import load_drug
    from dialyzability.model.build import build_model

    batch = make_batch([case], load_drug(case.drug))
    posterior = _peer.build(PROGRAM, stan_data(batch))
    model = build_model(batch, population="fixed").model
    diffs, values = _peer.check(posterior, model, points, seed)
    return _peer.deviation(diffs), float(diffs.mean()), float(np.abs(values).max())


def check_cases(paths: list[str], points: int) -> float:
    from dialyzability.io.case import load_case, parse_case
    from dialyzability.simulate import DESIGNS, simulate_case

    cases = [load_case(p) for p in paths]
    for design in DESIGNS:
        raw, _ = simulate_case(design, seed=1)
        cases.append(parse_case(raw, raw["id"]))
    worst = 0.0
    print(f"{'case':<36} {'max |dev|':>10} {'mean diff':>14} {'max |logp|':>11}")
    for case in cases:
        dev, mean, scale = check_case(case, points)
        worst = max(worst, dev)
        print(f"{case.id:<36} {dev:>10.2e} {mean:>14.3e} {scale:>11.4g}", flush=True)
    print(f"max |(Stan - PyMC) - mean| over {len(cases)} cases x {points} points: {worst:.2e}")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case")
    parser.add_argument("--only", action="store_true", help="check the given case alone")
    _peer.add_sampling_arguments(parser)
    args = parser.parse_args()
    from dialyzability.io.case import load_case
    from dialyzability.io.drugs import load_drug

    if args.build:
        case = load_case(args.case)
        _peer.build(PROGRAM, stan_data(make_batch([case], load_drug(case.drug))))
        return
    if not args.sample:
        paths = [args.case]
        if not args.only:
            given = Path(args.case).resolve()
            paths += [
                str(p) for p in sorted((ROOT / "data" / "cases").glob("*.toml")) if p != given
            ]
        worst = check_cases(paths, args.points)
        sys.exit(0 if worst < 1e-8 else 1)
    case = load_case(args.case)
    batch = make_batch([case], load_drug(case.drug))
    fit, times = _peer.sample(PROGRAM, stan_data(batch), args)
    import arviz as az

    names = ["volume", "cl_renal", "cl_nonrenal", "ka", "cl_ectr", "bioavailability_raw"]
    names += ["a0_raw", "weight", "timing", "ratio"]
    stats = _peer.diagnostics(fit, names)
    ratio = _peer.chains_draws(fit, "ratio")[..., 0]
    _peer.print_json({**times, **stats, "ess_ratio": float(az.ess(ratio, method="bulk"))})


if __name__ == "__main__":
    main()
