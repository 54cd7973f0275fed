import pytest

from dialyzability.io.units import UnitError, parse_quantity


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("1200 mg", "mass", 1200.0),
        ("1.2 g", "mass", 1200.0),
        ("3050 ug", "mass", 3.05),
        ("3050 µg", "mass", 3.05),
        ("2810 mL", "volume", 2.81),
        ("2.81 L", "volume", 2.81),
        ("882 ng/mL", "concentration", 0.882),  # 882e-6 mg / 1e-3 L = 0.882 mg/L
        ("0.88 mg/L", "concentration", 0.88),
        ("88.2 ug/dL", "concentration", 0.882),  # 88.2e-3 mg / 0.1 L = 0.882 mg/L
        ("250 mL/min", "flow", 15.0),  # 0.25 L/min * 60 = 15 L/h
        ("15 L/h", "flow", 15.0),
        ("51 kg", "weight", 51.0),
        ("112.2 lb", "weight", 50.893),  # 112.2 * 0.45359237 = 50.893
        ("90 min", "time", 1.5),
    ],
)
def test_canonical_units(text, kind, expected):
    assert parse_quantity(text, kind) == pytest.approx(expected, rel=1e-4)


def test_molar_concentration_uses_molar_mass():
    # lithium 1.2 mmol/L * 6.94 g/mol = 8.328 mg/L
    assert parse_quantity("1.2 mmol/L", "concentration", molar_mass=6.94) == pytest.approx(8.328)
    # baclofen 4.4 umol/L * 213.66 g/mol = 940.1 ug/L = 0.9401 mg/L
    assert parse_quantity("4.4 umol/L", "concentration", 213.66) == pytest.approx(0.940104)


def test_molar_amount_uses_molar_mass():
    # 8.12 mmol lithium * 6.94 g/mol = 56.35 mg
    assert parse_quantity("8.12 mmol", "mass", molar_mass=6.94) == pytest.approx(56.3528)


def test_molar_without_molar_mass_is_rejected():
    with pytest.raises(UnitError, match="molar mass"):
        parse_quantity("4.4 mmol/L", "concentration")


@pytest.mark.parametrize(
    ("text", "kind", "match"),
    [
        ("882", "concentration", "no unit"),
        (882, "concentration", "no unit"),
        ("5 kg", "concentration", "wrong dimension"),
        ("250 mL/min", "volume", "wrong dimension"),
        ("3 mg/L", "mass", "wrong dimension"),
        ("51 L", "weight", "wrong dimension"),
        ("2 h", "flow", "wrong dimension"),
        ("3 blorbs", "mass", "unknown unit"),
        ("mg 3", "mass", "start with a number"),
        ("-3 mg", "mass", "negative"),
        ("1e999 mg", "mass", "finite"),
        ("", "mass", "cannot read"),
        (None, "mass", "got NoneType"),
        (True, "mass", "got bool"),
        (["3 mg"], "mass", "got list"),
    ],
)
def test_rejected(text, kind, match):
    with pytest.raises(UnitError, match=match):
        parse_quantity(text, kind)
