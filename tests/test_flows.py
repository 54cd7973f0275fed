"""A reported blood flow bounds CL_ECTR by the plasma flow Q_B (1 − Hct) (issue 13)."""

import numpy as np
import pytest

from dialyzability.design import make_batch, unused_fields
from dialyzability.io.case import CaseError, parse_case
from dialyzability.io.drugs import load_drug
from dialyzability.model.build import build_model
from dialyzability.simulate import simulate_case

from .conftest import case_of, nuts_free_fit
from .test_effluent_samples import _prior


def _case(haematocrit=0.3, blood_flow="200 mL/min"):
    raw, _ = simulate_case("rich", 6)
    raw["id"] = "bounded"
    if haematocrit is not None:
        raw["patient"]["haematocrit"] = haematocrit
    if blood_flow is not None:
        raw["sessions"][0]["blood_flow"] = blood_flow
    return case_of(raw)


def test_no_draw_of_cl_ectr_exceeds_the_plasma_flow():
    # 200 mL/min = 12 L/h of blood; plasma 12 × (1 − 0.3) = 8.4 L/h
    case = _case()
    mask, bound = make_batch([case], load_drug("baclofen")).ectr_bound()
    assert mask.tolist() == [[True]] and bound[0, 0] == pytest.approx(8.4)
    fit = nuts_free_fit([case], draws=500)  # every draw of the model's prior
    draws = fit.idata.posterior["cl_ectr"].values.ravel()
    assert draws.max() < 8.4
    # far below the bound the prior is the drug's: CL = Q (1 − e^(−K/Q)) ≈ K
    raw_z = fit.idata.posterior["cl_ectr_raw"].values.ravel()
    prior = load_drug("baclofen").ectr["HD"]
    k = np.exp(prior.mu + prior.sigma * raw_z)
    np.testing.assert_allclose(draws, -8.4 * np.expm1(-k / 8.4), rtol=1e-10)
    assert "Flows: CL_ECTR cannot exceed the plasma flow" in "".join(
        str(b.text)
        for b in __import__("dialyzability.outputs.report", fromlist=["x"])
        .build_report(fit, fit.summary(), [])
        .blocks
    )


def test_without_haematocrit_the_bound_is_the_blood_flow_and_without_flow_none():
    mask, bound = make_batch([_case(None)], load_drug("baclofen")).ectr_bound()
    assert mask[0, 0] and bound[0, 0] == pytest.approx(12.0)
    mask, _ = make_batch([_case(None, None)], load_drug("baclofen")).ectr_bound()
    assert not mask.any()
    unbounded = _prior(build_model([_case(None, None)]).model, 200, 1)["cl_ectr"].values
    assert unbounded.max() > 12.0  # the drug's prior reaches beyond (checks the test above)


def test_blood_flow_is_no_longer_listed_as_unused():
    assert not any("blood_flow" in x for x in unused_fields(_case()))


@pytest.mark.parametrize("value", [0.05, 0.8])
def test_a_haematocrit_outside_0_1_to_0_7_is_a_case_error(value):
    raw, _ = simulate_case("rich", 6)
    raw["patient"]["haematocrit"] = value
    with pytest.raises(CaseError) as err:
        parse_case(raw, "x.toml")
    assert (err.value.path, err.value.block, err.value.field) == (
        "x.toml",
        "[patient]",
        "haematocrit",
    )
