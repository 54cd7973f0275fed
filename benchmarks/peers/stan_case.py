"""The Stan peer of the single-case model: data for ``case.stan`` from a case, and a check that
its log density equals the PyMC model's.

    python benchmarks/peers/stan_case.py data/cases/lee2020-baclofen.toml   # check the match
    python benchmarks/peers/stan_case.py CASE --sample --seed 1             # time a fit

Needs pystan 3 (``pip install pystan``; it compiles with the system C++ compiler and caches the
compiled program under ``~/.cache/httpstan``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from dialyzability.design import _observations, case_events, model_data
from dialyzability.inference.sampling import DEFAULT_SAMPLER_CONFIG
from dialyzability.io.case import load_case
from dialyzability.io.drugs import error_prior, load_drug

PROGRAM = Path(__file__).with_name("case.stan")


def stan_data(case, drug) -> dict:
    """The data block of ``case.stan`` (1-based indices) from the same functions the PyMC
    model uses (:func:`~dialyzability.design.model_data`, :func:`case_events`)."""
    ev, design, windows = case_events(case)
    data = model_data(case, drug)
    obs = _observations(case)
    latent = list(ev.latent())
    n = design.n_events
    latent_of = [0] * n
    duration_of = [0] * n
    for i in range(n):
        name = ev._name(i)
        if name is not None:
            latent_of[i] = latent.index(name) + 1
        if i in ev.durations:
            duration_of[i] = ev.durations[i][0] + 1
    modalities = case.modalities
    p = drug.priors
    nus, scales = zip(
        *(error_prior(drug.errors[k]) for k in ("level", "urine", "effluent")), strict=True
    )
    session_windows = windows["sessions"]
    return {
        "N": n,
        "event_const": data["event_constants"],
        "latent_of": latent_of,
        "duration_of": duration_of,
        "L": len(latent),
        "latent_lo": data["latent_lo"],
        "latent_hi": data["latent_hi"],
        "D": len(design.dose_event),
        "dose_event": [e + 1 for e in design.dose_event],
        "dose_amount": data["dose_amount"],
        "dose_oral": [int(o) for o in design.dose_oral],
        "any_oral": int(any(design.dose_oral)),
        "S": len(design.session_start),
        "session_start": [e + 1 for e in design.session_start],
        "session_end": [e + 1 for e in design.session_end],
        "session_modality": [m + 1 for m in design.session_modality],
        "M": len(modalities),
        "ectr_mu": [math.log(drug.ectr[m].median) for m in modalities],
        "ectr_sd": [drug.ectr[m].sigma for m in modalities],
        "W": len(design.windows),
        "windows": [[a + 1, b + 1] for a, b in design.windows],
        "U": len(case.urine),
        "urine_window": [w + 1 for w in windows["urine"]],
        "urine_log_y": data["urine_log_y"],
        "E": len(obs["measured"]),
        "effluent_session": [i + 1 for i in obs["measured"]],
        "effluent_window": [session_windows[i] + 1 for i in obs["measured"]],
        "effluent_log_y": data["effluent_log_y"],
        "Q": len(obs["quantified"]),
        "level_event": [design.samples[i] + 1 for i in obs["quantified"]],
        "level_log_y": data["level_log_y"],
        "C": len(obs["censored"]),
        "censored_event": [design.samples[i] + 1 for i in obs["censored"]],
        "censored_log_lloq": data["level_log_lloq"],
        "has_weight": int("log_weight" in data),
        "log_weight_known": float(data.get("log_weight", 0.0)),
        "weight_mu": math.log(drug.weight.median),
        "weight_sd": drug.weight.sigma,
        "cl_mean": data["cl_mean"],
        "cl_chol": data["cl_chol"],
        "volume_mu": math.log(p.volume.median),
        "volume_sd": p.volume.sigma,
        "ka_mu": math.log(p.ka.median),
        "ka_sd": p.ka.sigma,
        "f_alpha": p.bioavailability.alpha,
        "f_beta": p.bioavailability.beta,
        "initial_event": design.initial_event + 1,
        "log_a0_guess": float(data.get("log_a0_guess", 0.0)),
        "nu": list(nus),
        "scale": list(scales),
    }


def build(case, drug, seed: int = 1):
    import stan

    data = {
        k: (v.tolist() if isinstance(v, np.ndarray) else v)
        for k, v in stan_data(case, drug).items()
    }
    return stan.build(PROGRAM.read_text(), data=data, random_seed=seed)


def check(case, drug, points: int = 5, seed: int = 0) -> float:
    """Largest difference, over random unconstrained points, between the Stan and PyMC log
    densities (with Jacobians), after removing their difference at the first point (Stan and
    PyMC may differ by a constant)."""
    from dialyzability.model.build import build_model

    posterior = build(case, drug)
    model = build_model(case, drug).model
    logp = model.compile_logp(jacobian=True)
    rng = np.random.default_rng(seed)
    # PyMC's value variables in the order of Stan's parameters block
    order = ["volume_z", "clearance_z", "ka_z", "bioavailability_logodds__", "cl_ectr_z"]
    latent = [v.name for v in model.value_vars if v.name.endswith("_interval__")]
    order += [*latent, "weight_z", "a0_z"]
    values = {v.name: v for v in model.value_vars}
    diffs = []
    for _ in range(points):
        point = {}
        flat = []
        for name in order:
            if name not in values:
                continue
            shape = model.initial_point()[name].shape
            x = rng.normal(0.0, 0.7, size=shape)
            point[name] = x
            flat += np.atleast_1d(x).tolist()
        diffs.append(float(logp(point)) - posterior.log_prob(flat, adjust_transform=True))
    diffs = np.array(diffs)
    return float(np.abs(diffs - diffs[0]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case")
    parser.add_argument("--sample", action="store_true", help="time a fit instead of checking")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument(
        "--target-accept",
        type=float,
        default=DEFAULT_SAMPLER_CONFIG["target_accept"],
        help="Stan's adapt delta (default: dialyzability's target_accept)",
    )
    args = parser.parse_args()
    case = load_case(args.case)
    drug = load_drug(case.drug)
    if not args.sample:
        print(
            f"max |log density difference| (Stan - PyMC, constant removed): {check(case, drug):.2e}"
        )
        return
    start = time.perf_counter()
    posterior = build(case, drug, args.seed)
    built = time.perf_counter()
    fit = posterior.sample(
        num_chains=args.chains,
        num_warmup=args.tune,
        num_samples=args.draws,
        delta=args.target_accept,
    )
    done = time.perf_counter()
    import arviz as az

    ratio = np.asarray(fit["ratio"]).reshape(-1, args.chains).T  # (chains, draws)
    print(
        json.dumps(
            {
                "build_s": built - start,
                "sample_s": done - built,
                "divergences": int(np.sum(fit["divergent__"])),
                "ess_ratio": float(az.ess(ratio, method="bulk")),
            }
        )
    )


if __name__ == "__main__":
    main()
