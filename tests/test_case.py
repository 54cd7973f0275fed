import hashlib

import pytest

from dialyzability.io.case import CaseError, load_case, load_cases

from .conftest import CASES, LEE


def test_founding_case_normalised():
    case = load_case(LEE)
    assert case.id == "lee2020-baclofen"
    assert case.patient.weight == 51.0
    assert case.total_dose == 1200.0
    [level] = case.concentrations
    assert level.value == pytest.approx(0.882)  # 882 ng/mL = 0.882 mg/L
    assert level.time_h.lo == level.time_h.hi == 14
    [urine] = case.urine
    assert (urine.start_h.lo, urine.start_h.hi) == (2, 14)
    assert (urine.end.lo, urine.end.hi) == (26, 38)  # start + 24 h
    assert urine.recovered == 42.0 and urine.volume == pytest.approx(2.81)
    assert [s.modality for s in case.sessions] == ["HD", "HD", "HD"]
    assert case.sessions[0].amount == pytest.approx(3.05)
    assert case.sessions[1].amount is None


def test_file_is_never_modified():
    before = hashlib.sha256(LEE.read_bytes()).hexdigest()
    load_case(LEE)
    assert hashlib.sha256(LEE.read_bytes()).hexdigest() == before


def test_amount_from_concentration_and_volume(lee_raw, write_case):
    del lee_raw["urine"][0]["amount"]
    lee_raw["urine"][0]["concentration"] = "15 mg/L"
    case = load_case(write_case(lee_raw))
    assert case.urine[0].recovered == pytest.approx(15 * 2.81)  # 42.15 mg


def test_optional_dose_and_weight(lee_raw, write_case):
    del lee_raw["doses"]
    del lee_raw["patient"]
    case = load_case(write_case(lee_raw))
    assert case.total_dose is None and case.patient.weight is None
    assert case.kidney_function == "normal"


def test_below_lloq(lee_raw, write_case):
    lee_raw["concentrations"].append(
        {"time_h": 100, "matrix": "plasma", "lloq": "20 ng/mL", "below_lloq": True}
    )
    case = load_case(write_case(lee_raw))
    assert case.concentrations[1].below_lloq and case.concentrations[1].lloq == pytest.approx(0.02)


def set_(path, value):
    def mutate(raw):
        *parents, last = path
        target = raw
        for p in parents:
            target = target[p]
        target[last] = value

    return mutate


def delete(path):
    def mutate(raw):
        *parents, last = path
        target = raw
        for p in parents:
            target = target[p]
        del target[last]

    return mutate


def both(*mutations):
    def mutate(raw):
        for m in mutations:
            m(raw)

    return mutate


BAD = {
    "unknown unit": (
        set_(("urine", 0, "amount"), "42 blorbs"),
        "[[urine]] #1",
        "amount",
        "unknown unit",
    ),
    "mismatched unit": (
        set_(("concentrations", 0, "value"), "882 mg"),
        "[[concentrations]] #1",
        "value",
        "wrong dimension",
    ),
    "bare number": (set_(("patient", "weight"), 51), "[patient]", "weight", "no unit"),
    "non-numeric time": (
        set_(("doses", 0, "time_h"), "noon"),
        "[[doses]] #1",
        "time_h",
        "number of hours",
    ),
    "NaN time": (
        set_(("concentrations", 0, "time_h"), float("nan")),
        "[[concentrations]] #1",
        "time_h",
        "finite",
    ),
    "NaN value": (
        set_(("concentrations", 0, "value"), "nan ng/mL"),
        "[[concentrations]] #1",
        "value",
        "start with a number",
    ),
    "negative amount": (
        set_(("doses", 0, "amount"), "-1200 mg"),
        "[[doses]] #1",
        "amount",
        "negative",
    ),
    "negative concentration": (
        set_(("concentrations", 0, "value"), "-882 ng/mL"),
        "[[concentrations]] #1",
        "value",
        "negative",
    ),
    "negative duration": (
        set_(("sessions", 0, "duration_h"), -3),
        "[[sessions]] #1",
        "duration_h",
        "positive",
    ),
    "range lo > hi": (
        set_(("sessions", 1, "start_h"), [56, 34]),
        "[[sessions]] #2",
        "start_h",
        "lo > hi",
    ),
    "range of three": (
        set_(("sessions", 1, "start_h"), [34, 40, 56]),
        "[[sessions]] #2",
        "start_h",
        "two numbers",
    ),
    "missing field": (
        delete(("concentrations", 0, "time_h")),
        "[[concentrations]] #1",
        "time_h",
        "missing",
    ),
    "missing end and duration": (
        delete(("sessions", 2, "duration_h")),
        "[[sessions]] #3",
        "end_h",
        "end_h or duration_h",
    ),
    "missing urine amount": (
        delete(("urine", 0, "amount")),
        "[[urine]] #1",
        "amount",
        "concentration and volume",
    ),
    "unknown key (typo)": (
        set_(("sessions", 0, "recoverd"), "3 mg"),
        "[[sessions]] #1",
        "recoverd",
        "unknown field",
    ),
    "unknown top-level key": (set_(("sesions",), []), "", "sesions", "unknown field"),
    "unknown drug": (set_(("drug",), "unobtainium"), "", "drug", "unknown drug"),
    "unknown modality": (
        set_(("sessions", 0, "modality"), "dialysis"),
        "[[sessions]] #1",
        "modality",
        "'HD'",
    ),
    "end before start": (
        both(delete(("sessions", 0, "duration_h")), set_(("sessions", 0, "end_h"), 10)),
        "[[sessions]] #1",
        "end_h",
        "ends before it starts",
    ),
    "overlapping sessions": (
        both(set_(("sessions", 0, "start_h"), 14), set_(("sessions", 1, "start_h"), [14.5, 15])),
        "[[sessions]] #2",
        "start_h",
        "overlaps session #1",
    ),
    "recovery larger than dose": (
        set_(("urine", 0, "amount"), "1.5 g"),
        "[[urine]] #1",
        "amount",
        "more than the total dose",
    ),
    "recoveries add up above dose": (
        set_(("sessions", 1, "recovered"), "1190 mg"),
        "[[urine]] and [[sessions]]",
        "",
        "add up",
    ),
    "wrong block type": (set_(("sessions",), {"modality": "HD"}), "[[sessions]]", "", "valid list"),
    "below_lloq without lloq": (
        set_(("concentrations", 0, "below_lloq"), True),
        "[[concentrations]] #1",
        "lloq",
        "needs the lloq",
    ),
    "bad kidney function": (
        set_(("patient", "kidney_function"), "poor"),
        "[patient]",
        "kidney_function",
        "'normal'",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_malformed_case_is_rejected(kind, lee_raw, write_case):
    mutate, block, field, match = BAD[kind]
    mutate(lee_raw)
    path = write_case(lee_raw)
    with pytest.raises(CaseError, match=match) as info:
        load_case(path)
    err = info.value
    assert err.path == str(path)
    assert err.block == block
    assert err.field == field
    assert str(path) in str(err)


def test_invalid_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('id = "x"\ndrug = "baclofen\n')
    with pytest.raises(CaseError, match="invalid TOML"):
        load_case(path)


def test_not_utf8(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00drug")
    with pytest.raises(CaseError, match="UTF-8"):
        load_case(path)


def test_missing_file(tmp_path):
    with pytest.raises(CaseError, match="cannot read"):
        load_case(tmp_path / "absent.toml")


def test_load_cases_folder_and_duplicates(tmp_path, lee_raw, write_case):
    assert [c.id for c in load_cases(CASES)] == sorted(c.id for c in load_cases(CASES))
    write_case(lee_raw, "a.toml")
    write_case(lee_raw, "b.toml")
    with pytest.raises(CaseError, match="also used by"):
        load_cases(tmp_path)


def test_two_levels_at_the_same_time_in_one_matrix(lee_raw, write_case):
    """Two serum levels at 14 h (the founding case's 882 ng/mL and another) are an error that
    names the file, [[concentrations]] #2, time_h and both entries, reported with the file's
    other problems; a plasma level at the same time, or a level at a range of times, is not."""
    lee_raw["concentrations"] += [
        {"time_h": 14, "value": "0.5 mg/L", "matrix": "serum"},  # #2: same time and matrix
        {"time_h": 14, "value": "0.9 mg/L"},  # #3: plasma (the default), another matrix
        {"time_h": [13, 15], "value": "0.8 mg/L", "matrix": "serum"},  # #4: a range
        {"time_h": 20, "value": "0.3 mg/L", "matrix": "blood"},  # #5
        {"time_h": 20, "matrix": "blood", "lloq": "0.1 mg/L", "below_lloq": True},  # #6
    ]
    lee_raw["patient"]["weight"] = "-3 kg"  # an unrelated problem of the same file
    path = write_case(lee_raw)
    with pytest.raises(CaseError) as info:
        load_case(path)
    same = [p for p in info.value.problems if "same time" in p.message]
    assert [(p.file, p.block, p.index, p.field) for p in same] == [
        (str(path), "concentrations", 2, "time_h"),
        (str(path), "concentrations", 6, "time_h"),
    ]
    assert "serum" in same[0].message and "#1 and #2" in same[0].message
    assert "14 h" in same[0].message
    assert "blood" in same[1].message and "#5 and #6" in same[1].message
    assert any(p.block == "patient" for p in info.value.problems)  # reported together
    assert f"{path}: concentrations[2].time_h: two serum levels" in str(info.value)


def test_levels_at_the_same_time_in_different_matrices_are_fine(lee_raw, write_case):
    # the founding case's serum level at 14 h, and plasma and whole-blood levels at 14 h
    lee_raw["concentrations"].append({"time_h": 14, "value": "0.9 mg/L", "matrix": "plasma"})
    lee_raw["concentrations"].append({"time_h": 14, "value": "1.2 mg/L", "matrix": "blood"})
    case = load_case(write_case(lee_raw))
    assert [c.matrix for c in case.concentrations] == ["serum", "plasma", "blood"]
