import pytest

from dialyzability.io.drugs import DrugModelError, available_drugs, load_drug


def test_shipped_models_include_the_three_drugs():
    assert {"baclofen", "lithium", "metformin"} <= set(available_drugs())


@pytest.mark.parametrize("name", ["default", *available_drugs()])
def test_every_model_loads_with_sourced_priors(name):
    drug = load_drug(name)
    for row_name, description, source in drug.prior_table():
        assert description and len(source) > 20, row_name


def test_baclofen_facts():
    drug = load_drug("baclofen")
    assert drug.molar_mass == pytest.approx(213.66)
    assert drug.therapeutic_high == pytest.approx(0.4)  # 400 ng/mL = 0.4 mg/L
    assert drug.priors.volume.origin == "baclofen.toml"


def test_missing_prior_falls_back_to_default(tmp_path):
    (tmp_path / "default.toml").write_text(open(load_drug("default").path).read())
    (tmp_path / "x.toml").write_text('name = "x"\n')
    drug = load_drug("x", str(tmp_path))
    assert drug.priors.volume.origin == "default.toml"
    assert drug.molar_mass is None


def test_unknown_drug_and_bad_field(tmp_path):
    with pytest.raises(DrugModelError, match="unknown drug"):
        load_drug("unobtainium")
    (tmp_path / "default.toml").write_text(open(load_drug("default").path).read())
    (tmp_path / "y.toml").write_text('name = "y"\n[priors.volume]\ndist = "lognormal"\n')
    with pytest.raises(DrugModelError, match=r"priors\.volume"):
        load_drug("y", str(tmp_path))


# --- user folders of drug models -------------------------------------------------------------


def _user_file(folder, stem, **changes):
    """Write ``folder/<stem>.toml``: the shipped baclofen model with ``changes``."""
    import tomllib

    import tomli_w

    with open(load_drug("baclofen").path, "rb") as fh:
        raw = tomllib.load(fh)
    raw.update(name=stem, **changes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.toml"
    path.write_bytes(tomli_w.dumps(raw).encode())
    return path


def test_user_file_overrides_the_shipped_one_and_defaults_fall_back(tmp_path):
    shipped = load_drug("baclofen")
    path = _user_file(tmp_path, "baclofen", description="user baclofen")
    drug = load_drug("baclofen", tmp_path)
    assert drug.description == "user baclofen" and drug.user
    assert drug.path == str(path.resolve())
    assert drug.overrides == shipped.path  # the shipped file it replaces
    assert drug.defaults is None  # the folder has no default.toml: the shipped one is used
    assert drug.ectr["PD"].origin == "default.toml"
    assert drug.provenance() == (
        f"drug model: {path.resolve()} (overrides the shipped baclofen.toml)"
    )
    assert not shipped.user and shipped.overrides is None
    assert load_drug("baclofen").description != "user baclofen"  # the cache keeps them apart


def test_user_folder_adds_drugs_and_may_replace_the_defaults(tmp_path):
    _user_file(tmp_path, "newdrug")
    assert "newdrug" in available_drugs(tmp_path) and "newdrug" not in available_drugs()
    assert {"baclofen", "lithium"} <= set(available_drugs(tmp_path))
    drug = load_drug("newdrug", tmp_path)
    assert drug.user and drug.overrides is None
    assert drug.provenance().endswith("newdrug.toml (a user file)")
    default = open(load_drug("default").path).read()
    (tmp_path / "default.toml").write_text(default.replace("median = 5.0", "median = 6.0"))
    drug = load_drug("lithium", tmp_path)  # a shipped drug merged with the user's defaults
    assert not drug.user and drug.defaults == str((tmp_path / "default.toml").resolve())
    assert load_drug("default", tmp_path).priors.cl_total.median == 6.0


def test_option_wins_over_the_environment_variable(tmp_path, monkeypatch):
    from dialyzability.io.resources import MODELS_ENV, use_models_dir

    _user_file(tmp_path / "env", "baclofen", description="from the variable")
    _user_file(tmp_path / "opt", "baclofen", description="from the option")
    assert load_drug("baclofen").description == "GABA-B agonist muscle relaxant"
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "env"))
    assert load_drug("baclofen").description == "from the variable"
    with use_models_dir(tmp_path / "opt"):
        assert load_drug("baclofen").description == "from the option"
        with use_models_dir(None):  # no option given: the current choice stays
            assert load_drug("baclofen").description == "from the option"
    assert load_drug("baclofen").description == "from the variable"
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "absent"))
    with pytest.raises(DrugModelError, match="no such folder of drug models"):
        load_drug("baclofen")


def test_an_edited_user_file_is_read_again(tmp_path):
    import os

    path = _user_file(tmp_path, "edited", description="first")
    assert load_drug("edited", tmp_path).description == "first"
    _user_file(tmp_path, "edited", description="second")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert load_drug("edited", tmp_path).description == "second"


def test_every_problem_of_a_malformed_file_is_reported(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        'name = "bad"\ncolour = "red"\n'
        '[priors.volume]\ndist = "lognormal"\nmedian = -1\nsigma = 0.5\nsource = "x"\n'
        '[ectr.HD]\ndist = "lognormal"\nmedian = 4\n'
    )
    with pytest.raises(DrugModelError) as info:
        load_drug("bad", tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path.resolve()}: 4 problems:")
    for field in ("colour", "priors.volume.lognormal.median", "ectr.HD.sigma", "ectr.HD.source"):
        assert f"field '{field}'" in message
    (tmp_path / "worse.toml").write_text('name = "worse"\nmolar_mass = { value = "3 parsecs", ')
    with pytest.raises(DrugModelError, match=r"worse\.toml: invalid TOML"):
        load_drug("worse", tmp_path)
    _user_file(tmp_path, "units", molar_mass={"value": "3 parsecs", "source": "a typo"})
    with pytest.raises(DrugModelError, match=r"units\.toml: field 'molar_mass\.value'"):
        load_drug("units", tmp_path)


def test_short_citations():
    from dialyzability.io.drugs import short_citations

    source = (
        "Wuis EW, Dirks MJM, Vree TB, Van der Kleijn E, Eur J Clin Pharmacol 1989;37:181-184, "
        "doi:10.1007/BF00558228; Lee VR et al., Clin Toxicol 2020, doi 10.1080/1; "
        "Olson KR (ed.) Poisoning & Drug Overdose, Baclofen chapter (https://x.org/y 2019)"
    )
    assert short_citations(source) == ["Wuis 1989", "Lee 2020"]  # the book has no year
    group = "Gosselin S, Hoffman RS; EXTRIP workgroup. Title. Clin Toxicol 2014;52(8):856-67"
    assert short_citations(group + "; Calello DP et al.; EXTRIP workgroup. T. 2015;53") == [
        "Gosselin 2014",
        "Calello 2015",
    ]
    long = "US FDA label, Baclofen Tablets USP, DESCRIPTION: C10H12ClNO2 (https://x.gov/a/b)"
    assert short_citations(long, width=30) == ["US FDA label, Baclofen …"]
    assert short_citations("Uniform on 0-1 (https://www.example.org/x)") == [
        "Uniform on 0-1 (example.org)"
    ]


def test_catalogue_table_has_whole_words_and_aligned_columns(tmp_path):
    from dialyzability.io.drugs import catalogue, catalogue_table

    _user_file(tmp_path, "baclofen", description="a deliberately long description " * 3)
    rows = catalogue(tmp_path)
    assert [r["name"] for r in rows] == available_drugs()
    text = catalogue_table(rows)
    lines = text.splitlines()
    header, rule = lines[0], lines[1]
    starts = [i for i, c in enumerate(rule) if c == "-" and (i == 0 or rule[i - 1] == " ")]
    assert [header[i - 2 : i] for i in starts[1:]] == ["  "] * (len(starts) - 1)
    for line in lines[2:]:  # every cell starts at its column
        for i in starts[1:]:
            assert i > len(line) or line[i - 2 : i] == "  " or line[i - 1] == " "
    body = " ".join(" ".join(line.split()) for line in lines)
    for r in rows:
        for citation in r["citations"]:  # never broken across lines
            assert citation in text
        for word in r["description"].split():
            assert word in body.split()
    baclofen = next(r for r in rows if r["name"] == "baclofen")
    assert baclofen["user"] and baclofen["overrides"].endswith("baclofen.toml")
    assert "user (overrides shipped)" in text
    lo, hi = baclofen["prior_half_life_95_h"]
    assert f"{lo:.2g}–{hi:.3g} h" in text


def test_file_names_are_matched_in_any_case(tmp_path):
    _user_file(tmp_path, "Capital", description="capital")
    assert "capital" in available_drugs(tmp_path)
    assert load_drug("capital", tmp_path).description == "capital"
