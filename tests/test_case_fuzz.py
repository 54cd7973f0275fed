"""Random mutations of valid case files must give a valid case or a CaseError, nothing else."""

import copy
import tomllib

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialyzability.io.case import Case, CaseError, load_case

from .conftest import LEE

RICH = {
    "id": "rich",
    "drug": "baclofen",
    "clock": "hours since admission",
    "patient": {"weight": "70 kg", "age_years": 40, "sex": "male", "kidney_function": "impaired"},
    "doses": [
        {"time_h": [-6, -2], "amount": "600 mg", "route": "oral"},
        {"time_h": 1, "amount": "10 mg", "route": "iv"},
    ],
    "concentrations": [
        {"time_h": 2, "value": "1.5 mg/L", "matrix": "plasma"},
        {"time_h": 12, "value": "4 umol/L", "matrix": "serum", "lloq": "10 ng/mL"},
        {"time_h": 30, "matrix": "plasma", "lloq": "10 ng/mL", "below_lloq": True},
    ],
    "urine": [{"start_h": 0, "end_h": 12, "concentration": "20 mg/L", "volume": "1.1 L"}],
    "sessions": [
        {
            "modality": "CVVHDF",
            "start_h": 4,
            "duration_h": [20, 24],
            "effluent_volume": "48 L",
            "effluent_concentration": "0.5 mg/L",
            "blood_flow": "150 mL/min",
            "effluent_flow": "2 L/h",
            "effluent_samples": [{"time_h": 6, "concentration": "0.6 mg/L"}],
        },
    ],
}

UNITS = [
    "mg",
    "g",
    "ug",
    "ng/mL",
    "mg/L",
    "mmol/L",
    "umol",
    "mL",
    "L",
    "mL/min",
    "L/h",
    "kg",
    "lb",
    "h",
    "min",
    "1/h",
    "blorb",
    "mg/",
    "%",
    "",
    "mg mg",
    "/L",
    "degC",
    "mol",
]
scalars = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.builds(
        lambda x, u: f"{x:g} {u}",
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(UNITS),
    ),
    st.sampled_from(["HD", "CVVH", "oral", "iv", "plasma", "normal", "anuric", "baclofen"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _containers(obj, path=()):
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _containers(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _containers(v, (*path, i))


@st.composite
def mutated(draw):
    with LEE.open("rb") as fh:
        base = draw(st.sampled_from([tomllib.load(fh), RICH]))
    raw = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        places = [(p, o) for p, o in _containers(raw) if isinstance(o, dict | list) and o]
        _, container = draw(st.sampled_from(places))
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        key = draw(
            st.sampled_from(
                list(container) if isinstance(container, dict) else list(range(len(container)))
            )
        )
        if op == "replace":
            container[key] = draw(values)
        elif op == "delete":
            del container[key]
        elif isinstance(container, dict):
            container[draw(st.sampled_from([*Case.model_fields, "typo", "amount", "end_h"]))] = (
                draw(values)
            )
        else:
            container.append(draw(values))
    try:
        text = tomli_w.dumps(raw)
    except (TypeError, ValueError):
        text = tomli_w.dumps(base)
    if draw(st.integers(0, 9)) == 0:  # sometimes truncate the text itself
        text = text[: draw(st.integers(0, len(text)))]
    return text


@settings(
    max_examples=500,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(text=mutated())
def test_mutations_raise_only_case_error(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "case.toml"
    path.write_text(text, encoding="utf-8")
    try:
        case = load_case(path)
    except CaseError as exc:
        assert str(path) in str(exc)
    else:
        assert isinstance(case, Case)
    assert path.read_text(encoding="utf-8") == text  # never modified
