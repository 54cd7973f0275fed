"""NONMEM-style export and import: what the files hold, that pandas and pharmpy read them with
the right doses and observations per compartment, and that import -> export -> import is the
identity (on the founding case and every shipped case)."""

import copy
import csv
import math

import numpy as np
import pytest

from dialyzability.cli import main
from dialyzability.io.case import CaseError, load_case, load_cases, parse_case
from dialyzability.io.nonmem import (
    COLUMNS,
    DICTIONARY,
    NonmemError,
    read_nonmem,
    sidecars,
    write_nonmem,
)

from .conftest import CASES, LEE

SHIPPED = sorted(CASES.glob("*.toml"))


def _expected_counts(case):
    return {
        "doses": len(case.doses),
        "oral": sum(d.route == "oral" for d in case.doses),
        2: len(case.concentrations),
        3: len(case.urine),
        4: sum(s.amount is not None for s in case.sessions)
        + sum(len(s.effluent_samples) for s in case.sessions),
        "session rows": 2 * len(case.sessions),
    }


def _counts(df):
    evid, cmt = df["EVID"], df["CMT"]
    obs = (evid == 0) & (df["MDV"] == 0)
    return {
        "doses": int((evid == 1).sum()),
        "oral": int(((evid == 1) & (cmt == 1)).sum()),
        **{k: int((obs & (cmt == k)).sum()) for k in (2, 3, 4)},
        "session rows": int((evid == 2).sum()),
    }


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_pandas_reads_the_export_with_its_rows(path, tmp_path):
    import pandas as pd

    case = load_case(path)
    out = tmp_path / "data.csv"
    write_nonmem(case, out)
    df = pd.read_csv(out)
    assert tuple(df.columns) == COLUMNS
    assert all(pd.api.types.is_numeric_dtype(df[c]) for c in df.columns)  # NONMEM: numbers only
    assert _counts(df) == _expected_counts(case)
    assert (df["TIME"].diff().dropna() >= 0).all()  # time order within the ID
    levels = df[(df["EVID"] == 0) & (df["CMT"] == 2)]
    want = sorted(c.lloq if c.below_lloq else c.value for c in case.concentrations)
    assert sorted(levels["DV"]) == pytest.approx(want)  # mg/L, the canonical unit
    assert list(levels["BLQ"]) == [
        int(c.below_lloq) for c in sorted(case.concentrations, key=lambda c: c.time_h.mid)
    ]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_pharmpy_reads_the_export_of_every_case(path, tmp_path):
    pytest.importorskip("pharmpy")
    import warnings

    from pharmpy.model import DataInfo
    from pharmpy.modeling import (
        create_basic_pk_model,
        get_doses,
        get_number_of_individuals,
        get_observations,
        read_dataset_from_datainfo,
    )

    case = load_case(path)
    out = tmp_path / "data.csv"
    write_nonmem(case, out)
    types = {
        "ID": "id",
        "TIME": "idv",
        "DV": "dv",
        "AMT": "dose",
        "RATE": "rate",
        "EVID": "event",
        "MDV": "mdv",
        "CMT": "compartment",
        "DVID": "dvid",
        "BLQ": "blq",
        "LLOQ": "lloq",
    }
    di = DataInfo.create(list(COLUMNS), path=out).set_types(
        [types.get(c, "unknown") for c in COLUMNS]
    )
    expected = _expected_counts(case)
    for datatype in (None, "nonmem"):  # as a CSV, and as NONMEM reads it ($INPUT, IGNORE=@)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pharmpy's own deprecation warnings from pandas
            df = read_dataset_from_datainfo(di, datatype=datatype)
        assert _counts(df) == expected, datatype
    if not case.doses:
        return  # pharmpy's PK model needs a dosing compartment, found from the doses
    if len(case.concentrations) < 2:
        # pharmpy 2.1's initial estimate of the absorption time indexes the observations as a
        # Series, which a single observation is not (AttributeError in odes.py): the dataset
        # itself was read above
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_basic_pk_model("oral", dataset_path=out)  # column types found by pharmpy
        assert model.datainfo.id_column.name == "ID" and model.datainfo.dv_column.name == "DV"
        assert get_number_of_individuals(model) == 1
        doses = np.atleast_1d(get_doses(model))
        observations = get_observations(model)
    assert len(doses) == expected["doses"]
    assert float(doses.sum()) == pytest.approx(case.total_dose)
    assert len(observations) == expected[2] + expected[3] + expected[4]


def _same(a, b):
    """Two cases are the same: every normalised field and the raw case they were read from."""
    assert a.model_dump() == b.model_dump()
    assert a.raw == b.raw


def _midpoints(case):
    """The case with every time at its midpoint and every window's end as end_h (what an
    export keeps), in time order."""
    raw = copy.deepcopy(case.to_json())

    def mid(t):
        return 0.5 * (t[0] + t[1]) if isinstance(t, list) else t

    del raw["units"]
    for d in raw.get("doses", []):
        d["time_h"] = mid(d["time_h"])
        d["amount"] = f"{d['amount']!r} mg"
    for c in raw.get("concentrations", []):
        c["time_h"] = mid(c["time_h"])
        for k in ("value", "lloq"):
            if k in c:
                c[k] = f"{c[k]!r} mg/L"
    for key, w_case in (("urine", case.urine), ("sessions", case.sessions)):
        for w, orig in zip(raw.get(key, []), w_case, strict=True):
            w["start_h"], w["end_h"] = orig.start_h.mid, orig.end.mid
            w.pop("duration_h", None)
            for k in ("amount", "recovered"):
                if k in w:
                    w[k] = f"{w[k]!r} mg"
            if key == "urine":
                w["amount"] = f"{orig.recovered!r} mg"
                w.pop("concentration", None)
            if "volume" in w:
                w["volume"] = f"{w['volume']!r} L"
    raw["patient"] = {
        k: (f"{v!r} kg" if k == "weight" else v) for k, v in raw.get("patient", {}).items()
    }
    for k in ("doses", "concentrations", "urine"):
        if k in raw:
            raw[k].sort(key=lambda x: x.get("time_h", x.get("end_h")))
    return parse_case(raw, case.id)


def test_founding_case_survives_export_and_import(tmp_path):
    """lee2020 exported and read back is lee2020 with its ranges at their midpoints; exported
    again and read back, it is the same case (import -> export -> import is the identity)."""
    lee = load_case(LEE)
    write_nonmem(lee, tmp_path / "a.csv")
    [first] = read_nonmem(tmp_path / "a.csv")
    want = _midpoints(lee)
    for name in ("id", "drug", "reference", "doi", "clock", "patient", "doses", "concentrations"):
        assert getattr(first, name) == getattr(want, name), name
    assert [(u.start_h, u.end_h, u.amount, u.volume) for u in first.urine] == [
        (u.start_h, u.end_h, u.recovered, u.volume) for u in want.urine
    ]
    assert [(s.modality, s.start_h, s.end_h, s.amount) for s in first.sessions] == [
        (s.modality, s.start_h, s.end_h, s.amount) for s in want.sessions
    ]
    write_nonmem(first, tmp_path / "b.csv")
    [second] = read_nonmem(tmp_path / "b.csv")
    _same(second, first)
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_import_export_import_is_the_identity_on_every_case(path, tmp_path):
    write_nonmem(load_case(path), tmp_path / "a.csv")
    [first] = read_nonmem(tmp_path / "a.csv")
    write_nonmem(first, tmp_path / "b.csv")
    [second] = read_nonmem(tmp_path / "b.csv")
    _same(second, first)


def test_several_cases_one_id_each(tmp_path):
    cases = load_cases(CASES)
    write_nonmem(cases, tmp_path / "all.csv")
    back = read_nonmem(tmp_path / "all.csv")
    assert [c.id for c in back] == [c.id for c in cases]
    assert [c.drug for c in back] == [c.drug for c in cases]
    ids = {row["ID"] for row in csv.DictReader((tmp_path / "all.csv").open())}
    assert ids == {str(i) for i in range(1, len(cases) + 1)}


def test_ranges_are_listed_at_their_midpoint(tmp_path):
    paths = write_nonmem(load_case(CASES / "borrasblasco2007-lithium.toml"), tmp_path / "b.csv")
    text = paths[2].read_text()
    assert all(line.startswith("#") for line in text.splitlines())
    assert "# TIME ranges:" in text
    assert "#   ID 1 session1.start: [14, 21] h -> 17.5 h" in text
    assert "#   ID 1 level5 = session2.end + [0, 1]: [38, 86] h -> 62 h" in text
    assert '"id": "borrasblasco2007-lithium"' in text


def test_data_dictionary_names_every_column(tmp_path):
    dictionary, _ = sidecars(tmp_path / "d.csv")
    write_nonmem(load_case(LEE), tmp_path / "d.csv")
    rows = list(csv.DictReader(dictionary.open()))
    assert [r["COLUMN"] for r in rows] == list(COLUMNS) == list(DICTIONARY)
    assert all(r["MEANING"] for r in rows)
    units = {r["COLUMN"]: r["UNIT"] for r in rows}
    assert (units["TIME"], units["AMT"], units["LLOQ"], units["VOL"], units["WT"]) == (
        "h",
        "mg",
        "mg/L",
        "L",
        "kg",
    )


def test_without_the_comments_file_the_drug_is_needed(tmp_path):
    write_nonmem(load_case(LEE), tmp_path / "x.csv")
    sidecars(tmp_path / "x.csv")[1].unlink()
    with pytest.raises(NonmemError, match="drug"):
        read_nonmem(tmp_path / "x.csv")
    [case] = read_nonmem(tmp_path / "x.csv", drug="baclofen")
    assert case.id == "x-1" and case.total_dose == 1200


def test_below_lloq_and_effluent_samples_survive(tmp_path, lee_raw):
    lee_raw["concentrations"].append(
        {"time_h": 100, "lloq": "20 ng/mL", "below_lloq": True, "matrix": "plasma"}
    )
    lee_raw["sessions"][0]["effluent_samples"] = [{"time_h": 23, "concentration": "0.5 mg/L"}]
    lee_raw["sessions"][0]["blood_flow"] = "250 mL/min"
    lee_raw["sessions"][0]["effluent_flow"] = "30 L/h"
    case = parse_case(lee_raw, "lee.toml")
    write_nonmem(case, tmp_path / "x.csv")
    [back] = read_nonmem(tmp_path / "x.csv")
    level = back.concentrations[1]
    assert level.below_lloq and level.value is None and math.isclose(level.lloq, 0.02)
    s = back.sessions[0]
    assert s.effluent_samples[0].concentration == 0.5 and s.blood_flow == pytest.approx(15.0)


@pytest.mark.parametrize(
    ("edit", "row", "column", "match"),
    [
        (lambda t: t.replace("ID,TIME", "ID,TIMES"), "row 1", "", "missing column"),
        (lambda t: t.replace("\n1,14,", "\n1,abc,"), "row 3", "TIME", "not a number"),
        (lambda t: t.replace("\n1,14,", "\n1,nan,"), "row 3", "TIME", "finite"),
        (lambda t: t.replace(",1,1,1,0,0,", ",3,1,1,0,0,"), "row 2", "EVID", "EVID must be"),
        (lambda t: t + "1,2,3\n", "row 12", "", "3 fields"),
    ],
    ids=["header", "text", "nan", "reset", "ragged"],
)
def test_bad_rows_are_named(tmp_path, edit, row, column, match):
    write_nonmem(load_case(LEE), tmp_path / "x.csv")
    path = tmp_path / "x.csv"
    path.write_text(edit(path.read_text()))
    with pytest.raises(NonmemError, match=match) as info:
        read_nonmem(path)
    assert (info.value.block, info.value.field) == (row, column)
    assert str(path) in str(info.value)


def test_cli_export(tmp_path, capsys):
    out = tmp_path / "lee.csv"
    assert main(["export", str(LEE), "--nonmem", str(out)]) == 0
    assert "10 rows" in capsys.readouterr().out
    assert out.is_file() and all(p.is_file() for p in sidecars(out))
    assert main(["export", str(LEE), "--nonmem", str(tmp_path / "lee.tsv")]) == 1
    assert ".csv" in capsys.readouterr().err


def test_write_refuses_other_suffixes(tmp_path):
    with pytest.raises(CaseError, match=r"\.csv"):
        write_nonmem(load_case(LEE), tmp_path / "x.txt")
