"""Parsing of physical quantities written as strings ("882 ng/mL", "250 mL/min", "4.4 mmol/L").

Canonical internal units: hours (h), milligrams (mg), litres (L), mg/L for concentrations, L/h for
clearances and flows, kg for weight. Parsing is done with pint; every failure is turned into a
:class:`UnitError` whose message says what was expected, so callers can name the file and field.
"""

from __future__ import annotations

import math
import re
from functools import cache
from typing import Literal

Kind = Literal["mass", "volume", "concentration", "flow", "weight", "time", "molar_mass", "rate"]

#: canonical unit of each kind of quantity
CANONICAL: dict[str, str] = {
    "mass": "mg",
    "volume": "L",
    "concentration": "mg/L",
    "flow": "L/h",
    "weight": "kg",
    "time": "h",
    "molar_mass": "g/mol",
    "rate": "1/h",
}

_EXAMPLES: dict[str, str] = {
    "mass": '"1200 mg" or "1.2 g"',
    "volume": '"2810 mL" or "2.81 L"',
    "concentration": '"882 ng/mL", "0.88 mg/L" or "4.4 mmol/L"',
    "flow": '"250 mL/min" or "15 L/h"',
    "weight": '"51 kg"',
    "time": '"3 h"',
    "molar_mass": '"213.66 g/mol"',
    "rate": '"0.5 1/h"',
}

_ALLOWED = re.compile(r"^[0-9A-Za-z_.,+\-*/^() µμ%]+$")


class UnitError(ValueError):
    """A quantity string that cannot be read as the expected kind of quantity."""


@cache
def registry():
    """The shared pint unit registry (built once, on first use; pint keeps its parsed unit
    definitions in its own cache directory, which makes building it several times faster)."""
    import pint

    ureg = pint.UnitRegistry(autoconvert_offset_to_baseunit=False, cache_folder=":auto:")
    ureg.define("mcg = microgram")
    return ureg


def parse_quantity(text: object, kind: Kind, molar_mass: float | None = None) -> float:
    """Parse ``text`` and return its magnitude in the canonical unit of ``kind``.

    Parameters
    ----------
    text
        A string such as ``"882 ng/mL"``: a number followed by a unit. Bare numbers are rejected,
        because a value without a unit is ambiguous.
    kind
        Which kind of quantity is expected (see :data:`CANONICAL`).
    molar_mass
        Molar mass of the drug in g/mol; needed to read molar concentrations ("mmol/L") and molar
        amounts ("mmol").

    Returns
    -------
    float
        The magnitude in the canonical unit, finite and non-negative.

    Raises
    ------
    UnitError
        With a message naming the expected kind and an example.

    Examples
    --------
    >>> parse_quantity("882 ng/mL", "concentration")
    0.882
    >>> round(parse_quantity("250 mL/min", "flow"), 6)
    15.0
    >>> round(parse_quantity("1 mmol/L", "concentration", molar_mass=6.94), 6)
    6.94
    """
    expected = f"expected a {kind.replace('_', ' ')} with a unit, such as {_EXAMPLES[kind]}"
    if not isinstance(text, str):
        if isinstance(text, int | float) and not isinstance(text, bool):
            raise UnitError(f"the number {text!r} has no unit; {expected}")
        raise UnitError(f"got {type(text).__name__} {text!r}; {expected}")
    stripped = text.strip()
    if not stripped or len(stripped) > 64 or not _ALLOWED.match(stripped):
        raise UnitError(f"cannot read {text!r}; {expected}")
    number = re.match(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", stripped)
    if number is None:
        raise UnitError(f"cannot read {text!r}: it must start with a number; {expected}")
    unit_text = stripped[number.end() :].strip()
    if not unit_text:
        raise UnitError(f"{text!r} has no unit; {expected}")
    magnitude = float(number.group(0))
    if not math.isfinite(magnitude):
        raise UnitError(f"{text!r} is not a finite number; {expected}")
    ureg = registry()
    try:
        unit = ureg.parse_units(unit_text.replace("μ", "u").replace("µ", "u"))
        quantity = ureg.Quantity(magnitude, unit)
    except Exception as exc:  # pint raises many kinds of errors for unknown or malformed units
        raise UnitError(f"unknown unit {unit_text!r} in {text!r}; {expected}") from exc
    value = _convert(quantity, kind, molar_mass, text, expected)
    if not math.isfinite(value):
        raise UnitError(f"{text!r} is not a finite number; {expected}")
    if value < 0:
        raise UnitError(f"{text!r} is negative; {expected}")
    return value


def _convert(quantity, kind: str, molar_mass: float | None, text: str, expected: str) -> float:
    ureg = registry()
    target = ureg.parse_units(CANONICAL[kind])
    try:
        if quantity.dimensionality == target.dimensionality:
            return float(quantity.to(target).magnitude)
        molar_kinds = {"concentration": "mol/L", "mass": "mol"}
        if (
            kind in molar_kinds
            and quantity.dimensionality == ureg.parse_units(molar_kinds[kind]).dimensionality
        ):
            if molar_mass is None:
                raise UnitError(
                    f"{text!r} is a molar quantity, but the drug model gives no molar mass; "
                    f"write it in mass units ({_EXAMPLES[kind]})"
                )
            grams = quantity * ureg.Quantity(molar_mass, "g/mol")
            return float(grams.to(target).magnitude)
    except UnitError:
        raise
    except Exception as exc:
        raise UnitError(f"cannot convert {text!r}; {expected}") from exc
    raise UnitError(f"{text!r} has the wrong dimension ({quantity.units:~}); {expected}")
