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
