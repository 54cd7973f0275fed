"""Random mutations of exported NONMEM-style files must give cases or a CaseError (the
importer's NonmemError is one), nothing else, and never change the files read."""

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialyzability.io.case import Case, CaseError, load_case, parse_case
from dialyzability.io.nonmem import COLUMNS, nonmem_text, read_nonmem, sidecars

from .conftest import CASES, LEE

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
        {"time_h": "session1.start + 8", "value": "4 mg/L", "matrix": "serum", "lloq": "0.01 mg/L"},
        {"time_h": 30, "matrix": "blood", "lloq": "10 ng/mL", "below_lloq": True},
    ],
    "urine": [{"start_h": 0, "end_h": 12, "concentration": "20 mg/L", "volume": "1.1 L"}],
    "sessions": [
        {
            "modality": "CVVHDF",
            "start_h": [3, 5],
            "duration_h": [20, 24],
            "effluent_volume": "48 L",
            "effluent_concentration": "0.5 mg/L",
            "blood_flow": "150 mL/min",
            "effluent_flow": "2 L/h",
            "effluent_samples": [{"time_h": 6, "concentration": "0.6 mg/L"}],
        },
    ],
}
BASES = [
    nonmem_text([load_case(LEE)]),
    nonmem_text([load_case(CASES / "borrasblasco2007-lithium.toml")]),
    nonmem_text([parse_case(RICH, "rich"), load_case(LEE)]),
]

fields = st.one_of(
    st.sampled_from(["", ".", "-99", "0", "1", "2", "3", "4", "5", "7", "8", "-1", "0.5"]),
    st.sampled_from(["nan", "inf", "-inf", "1e308", "1e-320", "1e999", "1_0", " 3 ", "0x10"]),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8),
    st.sampled_from(['"', '"a,b"', "a\rb", "\x00", "é", "#", "ID", "TIME"]),
)


def _rows(text):
    return [list(r) for r in csv.reader(io.StringIO(text))]


def _text(rows):
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


@st.composite
def mutated(draw):
    data, _, comments = draw(st.sampled_from(BASES))
    rows = _rows(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(
                [
                    "field",
                    "field",
                    "field",
                    "delete row",
                    "copy row",
                    "swap rows",
                    "drop column",
                    "rename column",
                    "add column",
                ]
            )
        )
        r = draw(st.integers(0, len(rows) - 1))
        if op == "field" and rows[r]:
            rows[r][draw(st.integers(0, len(rows[r]) - 1))] = draw(fields)
        elif op == "delete row" and len(rows) > 1:
            del rows[r]
        elif op == "copy row":
            rows.insert(draw(st.integers(0, len(rows))), list(rows[r]))
        elif op == "swap rows":
            q = draw(st.integers(0, len(rows) - 1))
            rows[r], rows[q] = rows[q], rows[r]
        elif op == "drop column":
            c = draw(st.integers(0, len(COLUMNS) - 1))
            rows = [row[:c] + row[c + 1 :] for row in rows]
        elif op == "rename column" and rows[0]:
            rows[0][draw(st.integers(0, len(rows[0]) - 1))] = draw(
                st.sampled_from([*COLUMNS, "XX", "", "id", "Time"])
            )
        elif op == "add column":
            rows = [[*row, draw(fields)] for row in rows]
    text = _text(rows)
    if draw(st.integers(0, 9)) == 0:  # sometimes cut or pollute the text itself
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(["", "\n", "#x\n", "\ufeff", "\x00", '"']))
    if draw(st.integers(0, 4)) == 0:  # sometimes the comments file too
        lines = comments.splitlines()
        k = draw(st.integers(0, len(lines) - 1))
        lines[k] = draw(
            st.sampled_from(
                [
                    "# CASE 1: {",
                    "# CASE x: {}",
                    "# CASE 1: []",
                    '# CASE 1: {"id": 5}',
                    '# CASE 1: {"drug": "nope"}',
                    '# CASE 1: {"time_zero": "2019-99-01"}',
                    '# CASE 2: {"id": "lee2020-baclofen", "drug": "baclofen"}',
                    "",
                ]
            )
        )
        comments = "\n".join(lines) + "\n"
    drop_comments = draw(st.integers(0, 9)) == 0
    return text, None if drop_comments else comments


@settings(
    max_examples=600,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(files=mutated(), drug=st.sampled_from([None, None, "baclofen", "nope"]))
def test_mutations_raise_only_case_error(files, drug, tmp_path_factory):
    text, comments = files
    path = tmp_path_factory.mktemp("fuzz") / "data.csv"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    txt = sidecars(path)[1]
    if comments is not None:
        txt.write_bytes(comments.encode("utf-8", "surrogatepass"))
    try:
        cases = read_nonmem(path, drug=drug)
    except CaseError as exc:
        assert str(path.with_suffix("")) in str(exc)
    else:
        assert cases and all(isinstance(c, Case) for c in cases)
    assert path.read_bytes() == text.encode("utf-8", "surrogatepass")  # never modified
    if comments is not None:
        assert txt.read_bytes() == comments.encode("utf-8", "surrogatepass")
