"""The structural model: disposition and absorption as named choices (DESIGN §4).

A :class:`Structure` names the disposition (one or two compartments) and the absorption of oral
doses (first-order; first-order after a lag; two parallel first-order routes, a fast and a slow
one), the parameters each choice adds, and solves the kinetics of a batch of cases for any of
them. It is chosen per fit (``fit --structure``, ``--absorption``), by default the drug model's
``[structure]``.

Parameters (per case; every choice has the first six):

* ``volume`` the steady-state volume Vss (L): one compartment V = Vss; two compartments
  V1 = Vss (1 − φ) (central: the levels are A1 / V1) and V2 = Vss φ, with ``fraction_peripheral``
  φ = V2 / Vss, so that Vss keeps its meaning (and its prior) in both;
* ``cl`` endogenous clearance (L/h), ``cl_ectr`` (C, M) per modality (L/h), from the central
  compartment; ``ka`` (1/h); ``bioavailability`` F; ``a0`` the latent body burden (mg) of a case
  without a dose, in the central compartment;
* two compartments: ``cl_intercompartmental`` Q (L/h), k12 = Q / V1, k21 = Q / V2 (Gibaldi M,
  Perrier D. Pharmacokinetics, 2nd ed., 1982, ch. 2);
* lag: ``lag`` t_lag (h): an oral dose given at t enters the gut at t + t_lag (NONMEM's ALAG);
* dual: ``ka_slow`` and ``fraction_slow`` f_s: of an oral dose, F (1 − f_s) is absorbed at
  ``ka`` and F f_s at ``ka_slow`` < ``ka`` (the model keeps the order, see
  :mod:`dialyzability.model.build`).

The system is linear in its inputs, so dual absorption is the sum of two solutions, one per
route (the second with the oral doses only), and a lag is a shift of the oral doses' event
times; each disposition has one solution: one compartment in closed form
(:mod:`dialyzability.pk.closed_form`, compiled as :mod:`dialyzability.pk.kernel`), two
compartments by the matrix exponential of each interval
(:mod:`dialyzability.pk.two_compartment`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import get_args

import numpy as np

from dialyzability.design import BatchDesign
from dialyzability.io.drugs import Absorption, Disposition, DrugModel

DISPOSITIONS: tuple[str, ...] = get_args(Disposition)
ABSORPTIONS: tuple[str, ...] = get_args(Absorption)
#: the parameters each choice adds to one compartment with first-order absorption, in order
ADDED: dict[str, tuple[str, ...]] = {
    "two-compartment": ("fraction_peripheral", "cl_intercompartmental"),
    "lag": ("lag",),
    "dual": ("ka_slow", "fraction_slow"),
}
#: how the report names each choice
WORDS = {
    "one-compartment": "one compartment",
    "two-compartment": "two compartments",
    "first-order": "first-order absorption",
    "lag": "first-order absorption after a lag",
    "dual": "dual (fast and slow) absorption",
}
#: the backends of :meth:`Structure.solve`
BACKENDS = ("numpy", "graph", "kernel")


def macro_rates(k10, k12, k21):
    """The disposition rate constants (α, β), α ≥ β > 0 (1/h), of two compartments with
    micro-constants k10, k12, k21 (1/h): the eigenvalues of −[[−(k10 + k12), k21], [k12, −k21]],

        α, β = (s ± √d) / 2,   s = k10 + k12 + k21,   d = (k10 + k12 − k21)² + 4 k12 k21,

    β written as 2 k10 k21 / (s + √d), free of cancellation when β ≪ α (Gibaldi M, Perrier D.
    Pharmacokinetics, 2nd ed., 1982, ch. 2). Without exchange (k12 = 0) they are k10 and k21,
    the larger first. Numbers, numpy arrays, xarray DataArrays (their labels kept) or PyTensor
    tensors.

    Examples
    --------
    >>> [round(float(x), 12) for x in macro_rates(0.1, 0.0, 0.5)]  # no exchange: k21, k10
    [0.5, 0.1]
    >>> # s = 0.6, d = 0.4² + 4 · 0.03 = 0.28, (0.6 ± 0.52915) / 2; α β = k10 k21 = 0.02
    >>> [round(float(x), 6) for x in macro_rates(0.2, 0.3, 0.1)]
    [0.564575, 0.035425]
    """
    s = k10 + k12 + k21
    root = ((k10 + k12 - k21) ** 2 + 4.0 * k12 * k21) ** 0.5
    return 0.5 * (s + root), 2.0 * k10 * k21 / (s + root)


class StructureError(ValueError):
    """An unknown disposition or absorption, or one a backend cannot solve."""


@dataclass(frozen=True)
class Structure:
    """A structural model: ``disposition`` (one of :data:`DISPOSITIONS`) and ``absorption``
    (one of :data:`ABSORPTIONS`)."""

    disposition: str = "one-compartment"
    absorption: str = "first-order"

    def __post_init__(self):
        if self.disposition not in DISPOSITIONS:
            raise StructureError(
                f"unknown disposition {self.disposition!r} (choose {', '.join(DISPOSITIONS)})"
            )
        if self.absorption not in ABSORPTIONS:
            raise StructureError(
                f"unknown absorption {self.absorption!r} (choose {', '.join(ABSORPTIONS)})"
            )

    @classmethod
    def of(
        cls, drug: DrugModel, disposition: str | None = None, absorption: str | None = None
    ) -> Structure:
        """The drug model's default structure, with the choices given here replacing it."""
        return cls(
            disposition or drug.structure.disposition, absorption or drug.structure.absorption
        )

    @classmethod
    def from_record(cls, record: dict | None) -> Structure:
        """The structure a fit recorded (:meth:`record`); one compartment, first-order absorption
        for a fit that recorded none."""
        return cls(**(record or {}))

    def record(self) -> dict:
        """``{"disposition": ..., "absorption": ...}``, as a fit's configuration records it."""
        return dataclasses.asdict(self)

    @property
    def compartments(self) -> int:
        return 2 if self.disposition == "two-compartment" else 1

    @property
    def parameters(self) -> tuple[str, ...]:
        """The parameters this structure adds to one compartment with first-order absorption."""
        return ADDED.get(self.disposition, ()) + ADDED.get(self.absorption, ())

    @property
    def unused(self) -> tuple[str, ...]:
        """The parameters of the other choices, which this structure does not have."""
        every = [p for added in ADDED.values() for p in added]
        return tuple(p for p in every if p not in self.parameters)

    @property
    def name(self) -> str:
        """Short name, e.g. ``two-compartment`` or ``one-compartment+dual``."""
        if self.absorption == "first-order":
            return self.disposition
        return f"{self.disposition}+{self.absorption}"

    @property
    def label(self) -> str:
        """What a report says, e.g. "two compartments, dual (fast and slow) absorption"."""
        return f"{WORDS[self.disposition]}, {WORDS[self.absorption]}"

    def label_for(self, oral: bool) -> str:
        """:attr:`label`, or for a case without an oral dose the disposition alone, saying
        that the absorption plays no part."""
        if oral or self.absorption == "first-order":
            return self.label
        return (
            f"{WORDS[self.disposition]} (no oral dose: the {self.absorption} absorption plays "
            "no part)"
        )

    def volumes(self, params: dict):
        """(V1, V2) of ``params``: the central volume the levels read, and the peripheral one
        (None for one compartment)."""
        if self.compartments == 1:
            return params["volume"], None
        phi = params["fraction_peripheral"]
        return params["volume"] * (1.0 - phi), params["volume"] * phi

    def split_burden(self, params: dict, xp=np):
        """The latent body burden ``a0`` of a case without a dose, (C,), split between the
        central and the peripheral compartment as on the terminal phase off ECTR, (C, 2):
        A2 / A1 = k12 / (k21 − β) (the eigenvector of β; a chronically poisoned patient is at
        distribution equilibrium, not just dosed into the plasma; Gibaldi M, Perrier D.
        Pharmacokinetics, 2nd ed., 1982, ch. 2). The same start as the 6-h removal of the
        quantities registry."""
        v1, v2 = self.volumes(params)
        q = params["cl_intercompartmental"]
        k12, k21 = q / v1, q / v2
        _, beta = macro_rates(params["cl"] / v1, k12, k21)
        central = 1.0 / (1.0 + k12 / (k21 - beta))
        a0 = params["a0"]
        return xp.stack([a0 * central, a0 * (1.0 - central)], axis=-1)

    def routes(self, params: dict) -> list[tuple[object, object, bool]]:
        """The absorption routes as (bioavailability, ka, with the iv doses and a0): one, or
        for dual absorption the fast route (with the iv doses) and the slow one (oral only)."""
        f, ka = params["bioavailability"], params["ka"]
        if self.absorption != "dual":
            return [(f, ka, True)]
        slow = params["fraction_slow"]
        return [(f * (1.0 - slow), ka, True), (f * slow, params["ka_slow"], False)]

    def shifted(self, times, design: BatchDesign, params: dict):
        """Event times with each oral dose's event moved by the lag (for ``absorption="lag"``;
        otherwise ``times`` itself)."""
        if self.absorption != "lag":
            return times
        oral = np.zeros((design.n_cases, design.n_events))
        for c in range(design.n_cases):
            for event, is_oral in zip(design.dose_event[c], design.dose_oral[c], strict=True):
                if is_oral:  # padding doses are not oral
                    oral[c, event] = 1.0
        return times + params["lag"][:, None] * oral

    def solve(self, times, design: BatchDesign, params: dict, backend: str = "numpy"):
        """Concentrations at the sample events and AUCs over the windows of a batch of cases.

        Parameters
        ----------
        times
            (C, n) event times (h).
        design
            The batch's :class:`~dialyzability.design.BatchDesign`.
        params
            Per-case arrays (C,) named as in the module docstring (``cl_ectr`` (C, M)); for the
            ``"kernel"`` backend also ``dose_amount`` (C, D) (mg, a tensor of the model's data).
        backend
            ``"numpy"`` (a :class:`Solution`, with the curves between events), ``"graph"``
            (PyTensor array expressions, one compartment only: the JAX path) or ``"kernel"``
            (one compiled PyTensor operation per route).

        Returns
        -------
        Solution or dict
            ``conc`` (C, L) mg/L and ``auc`` (C, W) mg·h/L.
        """
        if backend not in BACKENDS:
            raise StructureError(f"unknown backend {backend!r}")
        xp = np
        if backend != "numpy":
            import pytensor.tensor as xp
        if backend == "graph" and self.compartments == 2:
            raise StructureError(
                "two compartments are sampled with the compiled kernel (nutpie or PyMC's "
                "sampler); the JAX path (numpyro) solves one compartment only"
            )
        v1, v2 = self.volumes(params)
        times = self.shifted(times, design, params)
        oral = design.dose_oral.astype(float)
        parts = []
        a0 = params["a0"]
        if self.compartments == 2:
            a0 = self.split_burden(params, xp)
        for f, ka, with_iv in self.routes(params):
            route_a0 = a0 if with_iv else 0.0 * a0
            args = dict(
                volume=v1, cl=params["cl"], cl_ectr=params["cl_ectr"], ka=ka, f=f, a0=route_a0
            )
            if self.compartments == 2:
                args |= dict(q=params["cl_intercompartmental"], v2=v2)
            if backend == "kernel":
                dose = params["dose_amount"] * (1.0 if with_iv else oral)
                parts.append(self._kernel(times, design, args, dose))
            else:
                route_design = design if with_iv else _oral_only(design)
                parts.append(self._array(times, route_design, args, xp))
        if backend == "numpy":
            return Solution(self, parts)
        return {"conc": sum(p["conc"] for p in parts), "auc": sum(p["auc"] for p in parts)}

    def _kernel(self, times, design, args, dose):
        if self.compartments == 2:
            from dialyzability.pk.two_compartment import solve_op

            return solve_op(times, design, **_positional(args), dose_amount=dose)
        from dialyzability.pk.kernel import solve_op

        return solve_op(times, design, **_positional(args), dose_amount=dose)

    def _array(self, times, design, args, xp):
        if self.compartments == 2:
            from dialyzability.pk.two_compartment import solve_batch

            out = solve_batch(times, design, **_positional(args, "bioavailability"))
        else:
            from dialyzability.pk.closed_form import solve_batch

            out = solve_batch(times, design, **_positional(args, "bioavailability"), xp=xp)
        out["args"] = args
        return out


def _positional(args: dict, f_name: str = "f") -> dict:
    """The solvers' keyword names (``f`` or ``bioavailability`` for F)."""
    out = dict(args)
    out[f_name] = out.pop("f")
    return out


def _oral_only(design: BatchDesign) -> BatchDesign:
    """``design`` without its intravenous doses (the slow route of a dual absorption)."""
    return dataclasses.replace(design, dose_amount=design.dose_amount * design.dose_oral)


class Solution:
    """A numpy solution of :meth:`Structure.solve`: ``conc``, ``auc`` and the curve at any
    times (:meth:`at`), each the sum over the absorption routes."""

    def __init__(self, structure: Structure, parts: list[dict]):
        self.structure, self.parts = structure, parts
        self.conc = sum(p["conc"] for p in parts)
        self.auc = sum(p["auc"] for p in parts)

    def amounts_at(self, query) -> tuple[np.ndarray, np.ndarray]:
        """Amounts (mg) in the central and the peripheral compartment at the times ``query``
        (h), as :meth:`at` (the peripheral one 0 for one compartment); the gut is not counted."""
        central, peripheral = 0.0, 0.0
        for part in self.parts:
            a = part["args"]
            if self.structure.compartments == 2:
                from dialyzability.pk.two_compartment import amounts_at

                c, p = amounts_at(part, a["volume"], a["cl"], a["ka"], a["q"], a["v2"], query)
            else:
                from dialyzability.pk.closed_form import concentration_at

                conc = concentration_at(part, a["volume"], a["cl"], a["ka"], query)
                c, p = conc * np.asarray(a["volume"])[..., None], 0.0 * conc
            central, peripheral = central + c, peripheral + p
        return central, peripheral

    def at(self, query) -> np.ndarray:
        """Concentration (mg/L) at the times ``query`` (h): (P,) or (C, P), any order; (C, P)."""
        total = 0.0
        for part in self.parts:
            a = part["args"]
            if self.structure.compartments == 2:
                from dialyzability.pk.two_compartment import concentration_at

                total = total + concentration_at(
                    part, a["volume"], a["cl"], a["ka"], a["q"], a["v2"], query
                )
            else:
                from dialyzability.pk.closed_form import concentration_at

                total = total + concentration_at(part, a["volume"], a["cl"], a["ka"], query)
        return total
