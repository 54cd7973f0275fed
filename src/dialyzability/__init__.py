"""dialyzability: did extracorporeal treatment clear a drug faster than the kidneys?

Bayesian estimation of extracorporeal (CL_ECTR) versus renal (CL_R) clearance from the data of
poisoning case reports: plasma levels, urine recoveries and dialysate/effluent recoveries.

    from dialyzability import load_case, load_cases, fit, pool, Fit

    result = fit(load_case("data/cases/lee2020-baclofen.toml"), seed=1)
    print(result.summary().table())

Heavy libraries (PyMC, ArviZ) are imported lazily by the modules that need them, so that
``import dialyzability`` and ``dialyzability check`` stay fast: the names above are imported
from their modules on first use.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dialyzability")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

#: the public names, each imported from its module on first use (PEP 562)
_LAZY = {
    "load_case": "dialyzability.io.case",
    "load_cases": "dialyzability.io.case",
    "fit": "dialyzability.api",
    "pool": "dialyzability.api",
    "Fit": "dialyzability.results.fit",
}

__all__ = ["Fit", "__version__", "fit", "load_case", "load_cases", "pool"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'dialyzability' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
