"""dialyzability: did extracorporeal treatment clear a drug faster than the kidneys?

Bayesian estimation of extracorporeal (CL_ECTR) versus renal (CL_R) clearance from the data of
poisoning case reports: plasma levels, urine recoveries and dialysate/effluent recoveries.

Heavy libraries (PyMC, ArviZ) are imported lazily by the modules that need them, so that
``import dialyzability`` and ``dialyzability check`` stay fast.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dialyzability")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]
