"""Nothing a case gives is dropped silently: what the model does not use is said, in ``check``
and in the report's Assumptions (issue 13)."""

from dialyzability.cli import describe_case
from dialyzability.design import unused_fields
from dialyzability.outputs.report import build_report

from .conftest import case_of, lee_variant, nuts_free_fit, simulated_case


def _with_flows():
    raw = {
        "id": "flows",
        "drug": "baclofen",
        "patient": {"weight": "70 kg", "age_years": 40, "sex": "female"},
        "doses": [{"time_h": 0, "amount": "500 mg"}],
        "concentrations": [
            {"time_h": 3, "value": "2 mg/L", "matrix": "serum"},
            {"time_h": 9, "value": "1.2 mg/L", "matrix": "blood"},
        ],
        "sessions": [
            {
                "modality": "HD",
                "start_h": 4,
                "duration_h": 4,
                "blood_flow": "250 mL/min",
                "effluent_flow": "30 L/h",
            },
            {
                "modality": "HD",
                "start_h": 10,
                "duration_h": 4,
                "effluent_flow": "30 L/h",
                "effluent_samples": [{"time_h": 11, "concentration": "0.1 mg/L"}],
            },
        ],
    }
    return case_of(raw)


def test_unused_fields_name_idle_effluent_flow_and_descriptive_patient_fields():
    unused = unused_fields(_with_flows())
    assert unused == [  # (the blood flow bounds CL_ECTR: tests/test_flows.py)
        "sessions #1 effluent_flow (30 L/h; used only with effluent samples)",
        "patient age_years and sex (descriptive only)",
    ]
    # session 2's effluent flow is used (its sample's prediction): not listed
    assert unused_fields(simulated_case("effluent_samples", 1)) == []


def test_check_prints_what_the_model_does_not_use():
    text = describe_case(_with_flows())
    line = next(x for x in text.splitlines() if "not used by the model" in x)
    assert "effluent_flow (30 L/h" in line and "age_years and sex" in line
    assert "not used by the model" not in describe_case(simulated_case("rich", 1))


def test_report_lists_it_under_assumptions_with_the_matrices():
    case = _with_flows()
    fit = nuts_free_fit([case], draws=250)
    text = build_report(fit, fit.summary(), []).markdown()
    assumptions = text[text.index("## Assumptions") : text.index("## Diagnostics")]
    assert "Not used by the model: sessions #1 effluent_flow (30 L/h" in assumptions
    assert "Flows: CL_ECTR cannot exceed the plasma flow" in assumptions
    assert "serum levels are treated as plasma levels" in assumptions
    assert "whole-blood levels are modelled as B:P × the plasma level" in assumptions
    plain = nuts_free_fit([simulated_case("rich", 1)], draws=250)
    assert "Not used by the model" not in build_report(plain, plain.summary(), []).markdown()
    lee = nuts_free_fit([lee_variant("no_session")], draws=250)  # reports age and sex
    assert (
        "Not used by the model: patient age_years and sex"
        in build_report(lee, lee.summary(), []).markdown()
    )
