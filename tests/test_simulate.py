import math

import pytest

from dialyzability.io.case import parse_case
from dialyzability.simulate import DESIGNS, simulate_case


@pytest.mark.parametrize("kind", DESIGNS)
def test_simulated_cases_are_valid_case_files(kind):
    raw, truth = simulate_case(kind, seed=2)
    case = parse_case(raw, raw["id"])
    assert case.id == f"sim-{kind}-2"
    assert truth.volume > 0 and truth.cl_renal > 0


def test_noise_free_same_window_amounts_give_the_true_ratio():
    # urine = CL_R x AUC(window), effluent = CL_ECTR x AUC(window): the ratio is exact
    raw, truth = simulate_case("same_window", seed=4, noise=0.0)
    case = parse_case(raw, raw["id"])
    assert case.sessions[0].amount / case.urine[0].recovered == pytest.approx(truth.ratio, rel=1e-5)


def test_seeds_reproduce():
    assert simulate_case("rich", 9)[0] == simulate_case("rich", 9)[0]
    assert simulate_case("rich", 9)[0] != simulate_case("rich", 10)[0]
    raw, _ = simulate_case("censored", 3)
    censored = [c for c in raw["concentrations"] if c.get("below_lloq")]
    assert len(censored) == 2 and all(not math.isnan(float(c["lloq"].split()[0])) for c in censored)
