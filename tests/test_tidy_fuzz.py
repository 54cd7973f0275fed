"""Random mutations of valid tidy CSV files must give valid cases or a CaseError, nothing else,
and leave the file as it was (as tests/test_case_fuzz.py does for case files)."""

import csv
import hashlib
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialyzability.io.case import Case, CaseError
from dialyzability.io.template import template_rows
from dialyzability.io.tidy import KINDS, NAMES, PATIENT_FIELDS, load_tidy_csv

from .conftest import ROOT

EXAMPLE = (ROOT / "data" / "example-tidy.csv").read_text(encoding="utf-8")
BASES = [
    list(csv.reader(io.StringIO(EXAMPLE))),
    template_rows(),  # every kind of row, effluent samples and a value below the LLOQ
]

CELLS = st.one_of(
    st.text(max_size=10),
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "3",
            "1e999",
            "nan",
            "inf",
            "-inf",
            "1_000",
            "0x10",
            "14.5",
            "1e-300",
            "true",
            "false",
            "mg",
            "ng/mL",
            "mmol/L",
            "blorb",
            "kg",
            "L/h",
            "2810 mL",
            "250 mL/min",
            "HD",
            "CVVH",
            "dialysis",
            "oral",
            "iv",
            "serum",
            "baclofen",
            "lithium",
            "unobtainium",
            "default",
            "../default",
            '"',
            "\n",
            "\r",
            ",",
            "\ufeff",
            "é",
            "²",
            "٣",
            *KINDS,
            *PATIENT_FIELDS,
            *NAMES,
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
)


@st.composite
def mutated(draw):
    rows = [list(r) for r in draw(st.sampled_from(BASES))]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(
                ["cell"] * 5 + ["header", "drop row", "copy row", "drop column", "extra"]
            )
        )
        n = len(rows)
        if op == "cell" and n > 1:
            r = draw(st.integers(1, n - 1))
            if rows[r]:
                rows[r][draw(st.integers(0, len(rows[r]) - 1))] = draw(CELLS)
        elif op == "header" and rows and rows[0]:
            rows[0][draw(st.integers(0, len(rows[0]) - 1))] = draw(CELLS)
        elif op == "drop row" and n:
            del rows[draw(st.integers(0, n - 1))]
        elif op == "copy row" and n > 1:
            rows.insert(draw(st.integers(1, n)), list(rows[draw(st.integers(1, n - 1))]))
        elif op == "drop column" and rows and rows[0]:
            c = draw(st.integers(0, len(rows[0]) - 1))
            rows = [r[:c] + r[c + 1 :] for r in rows]
        elif op == "extra" and n:
            rows[draw(st.integers(0, n - 1))].append(draw(CELLS))
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    text = buffer.getvalue()
    if draw(st.integers(0, 9)) == 0:  # sometimes truncate, or corrupt, the text itself
        text = text[: draw(st.integers(len(text) // 4, len(text)))]
    data = text.encode("utf-8")
    if draw(st.integers(0, 19)) == 0:
        data = data[: draw(st.integers(len(data) // 2, len(data)))] + draw(st.binary(max_size=4))
    return data


@settings(
    max_examples=500,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=mutated())
def test_mutations_raise_only_case_error(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "cases.csv"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    try:
        cases = load_tidy_csv(path)
    except CaseError as exc:
        assert exc.problems and str(path) in str(exc)
        assert all(p.file == str(path) for p in exc.problems)
        assert all(p.message for p in exc.problems)
    else:
        assert cases and all(isinstance(c, Case) for c in cases)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # never modified
