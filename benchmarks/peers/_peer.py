"""What the Stan peers share: building a program, laying a PyMC point out in Stan's unconstrained
coordinates (by name), the log-density check, and the draws and diagnostics of a Stan fit.

Both the PyMC model and the Stan programs use the same unconstrained coordinates: the sampler's
raws as they are, ``log`` for the between-case SDs (Stan ``<lower=0>``), logit for the Beta
bioavailability and the uniform timings (Stan ``<lower=0, upper=1>``, ``<lower=lo, upper=hi>``).
PyMC's value variables carry the transform in their name (``timing_interval__``); without it
they are the Stan parameters' names.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np

#: suffixes PyMC gives the value variables of transformed parameters
_TRANSFORMS = re.compile(r"_(log|logodds|interval)__$")


def to_json(data: dict) -> dict:
    """Stan data with numpy arrays as (nested) lists and numpy scalars as Python numbers."""
    out = {}
    for k, v in data.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist()
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def build(program: Path, data: dict, seed: int = 1):
    """The pystan 3 posterior of ``program`` with ``data`` (compiled once per program text;
    httpstan caches the binary under ``~/.cache/httpstan``)."""
    import stan

    return stan.build(program.read_text(), data=to_json(data), random_seed=seed)


def stan_name(value_var: str) -> str:
    return _TRANSFORMS.sub("", value_var)


def layout(posterior, model) -> list[tuple[str, str, int]]:
    """(Stan parameter, PyMC value variable, size) in the order of Stan's unconstrained vector
    (the parameters block's order; within a parameter C order, which is Stan's for arrays of
    vectors and for vectors). Fails unless the two models have the same parameters and sizes."""
    values = {stan_name(v.name): v.name for v in model.value_vars}
    point = model.initial_point()
    rows = []
    for name, dims in zip(posterior.param_names, posterior.dims, strict=True):
        if name not in values:
            continue  # transformed parameters and generated quantities
        size = int(np.prod(dims)) if dims else 1
        pymc_size = int(np.size(point[values[name]]))
        if size != pymc_size:
            raise AssertionError(f"{name}: Stan size {size}, PyMC size {pymc_size}")
        rows.append((name, values[name], size))
    missing = set(values) - {r[0] for r in rows}
    missing = {m for m in missing if np.size(point[values[m]])}
    if missing:
        raise AssertionError(f"PyMC value variables without a Stan parameter: {sorted(missing)}")
    return rows


def check(posterior, model, points: int = 10, seed: int = 0, spread: float = 1.0):
    """Stan's and PyMC's log densities (unconstrained, with Jacobians) at ``points`` random
    points: PyMC's initial point plus N(0, ``spread``) noise on every coordinate. Returns the
    array of differences (Stan - PyMC) and of PyMC's values."""
    logp = model.compile_logp(jacobian=True)
    rows = layout(posterior, model)
    start = model.initial_point()
    rng = np.random.default_rng(seed)
    diffs, values = [], []
    for _ in range(points):
        point = {k: v + spread * rng.normal(size=np.shape(v)) for k, v in start.items()}
        flat: list[float] = []
        for _, value_var, _ in rows:
            flat += np.ravel(point[value_var]).tolist()
        ours = float(logp(point))
        theirs = posterior.log_prob(flat, adjust_transform=True)
        diffs.append(theirs - ours)
        values.append(ours)
    return np.array(diffs), np.array(values)


def deviation(diffs: np.ndarray) -> float:
    """Largest deviation of the differences from their mean (0 if they differ by a constant)."""
    return float(np.abs(diffs - diffs.mean()).max())


def chains_draws(fit, name: str) -> np.ndarray:
    """A Stan variable's draws as (chain, draw, *dims) (pystan 3 stores draw-major, chains
    interleaved: flat index = draw * chains + chain)."""
    a = np.asarray(fit[name])
    a = a.reshape(*a.shape[:-1], -1, fit.num_chains)  # (*dims, draw, chain)
    return np.moveaxis(np.moveaxis(a, -1, 0), -1, 1)


def diagnostics(fit, names: list[str]) -> dict:
    """Divergences, max R-hat and min bulk ESS over the elements of ``names`` (ArviZ)."""
    import arviz as az

    rhat, ess = [], []
    for name in names:
        if name not in fit.param_names or 0 in fit.dims[fit.param_names.index(name)]:
            continue  # not in this program, or empty (e.g. no latent weight)
        x = chains_draws(fit, name)
        x = x.reshape(x.shape[0], x.shape[1], -1)
        for i in range(x.shape[-1]):
            v = x[..., i]
            if not np.all(np.isfinite(v)) or np.ptp(v) == 0:
                continue
            rhat.append(float(az.rhat(v)))
            ess.append(float(az.ess(v, method="bulk")))
    return {
        "divergences": int(np.sum(fit["divergent__"])),
        "r_hat_max": max(rhat, default=float("nan")),
        "ess_bulk_min": min(ess, default=float("nan")),
    }


def sample(program: Path, data: dict, args) -> tuple[object, dict]:
    """Build and sample (``args``: seed, chains, tune, draws, target_accept), timed."""
    start = time.perf_counter()
    posterior = build(program, data, args.seed)
    built = time.perf_counter()
    fit = posterior.sample(
        num_chains=args.chains,
        num_warmup=args.tune,
        num_samples=args.draws,
        delta=args.target_accept,
    )
    done = time.perf_counter()
    return fit, {"build_s": built - start, "sample_s": done - built, "wall_s": done - start}


def add_sampling_arguments(parser) -> None:
    from dialyzability.inference.sampling import DEFAULT_SAMPLER_CONFIG as D

    parser.add_argument("--sample", action="store_true", help="time a fit instead of checking")
    parser.add_argument(
        "--build", action="store_true", help="only compile the program (or find it cached)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--draws", type=int, default=D["draws"])
    parser.add_argument("--tune", type=int, default=D["tune"])
    parser.add_argument("--chains", type=int, default=D["chains"])
    parser.add_argument(
        "--target-accept",
        type=float,
        default=D["target_accept"],
        help="Stan's adapt delta (default: dialyzability's target_accept)",
    )
    parser.add_argument("--points", type=int, default=10, help="random points per check")


def print_json(record: dict) -> None:
    print(json.dumps(record), flush=True)
