import math

import pytest

from dialyzability.io.case import Time, parse_case
from dialyzability.results.nca import classical_estimates, segment_auc, window_auc


def T(x):
    return Time(lo=x, hi=x)


def test_segment_linear_up():
    # rising 2 -> 6 mg/L over 0-4 h: (2 + 6)/2 * 4 = 16 mg.h/L
    assert segment_auc(0, 2, 4, 6, 0, 4) == pytest.approx(16.0)
    # part of it, 1-3 h: C(1) = 3, C(3) = 5 -> (3 + 5)/2 * 2 = 8
    assert segment_auc(0, 2, 4, 6, 1, 3) == pytest.approx(8.0)


def test_segment_log_down():
    # falling 8 -> 2 mg/L over 0-4 h: lambda = ln(4)/4 = 0.34657; AUC = (8 - 2)/0.34657 = 17.312
    assert segment_auc(0, 8, 4, 2, 0, 4) == pytest.approx(6 / (math.log(4) / 4))
    # 2-4 h: C(2) = 4; (4 - 2)/0.34657 = 5.7708
    assert segment_auc(0, 8, 4, 2, 2, 4) == pytest.approx(5.770780, rel=1e-6)


def test_window_auc_sums_segments():
    levels = [(0.0, 2.0), (4.0, 6.0), (8.0, 3.0)]
    # 0-4 h linear up: 16; 4-8 h log down 6 -> 3: lambda = ln2/4 = 0.173287, (6-3)/0.173287 = 17.312
    auc, reason = window_auc(levels, T(0), T(8))
    assert reason == "" and auc == pytest.approx(16 + 3 / (math.log(2) / 4))


def test_window_not_bracketed_is_not_extrapolated():
    auc, reason = window_auc([(2.0, 5.0), (6.0, 3.0)], T(0), T(6))
    assert auc is None and "do not bracket" in reason


def _case(levels, urine_amount="40 mg", session_amount="10 mg", start=2, end=6):
    return parse_case(
        {
            "id": "nca",
            "drug": "default",
            "doses": [{"time_h": 0, "amount": "1000 mg"}],
            "concentrations": [{"time_h": t, "value": f"{c} mg/L"} for t, c in levels],
            "urine": [{"start_h": start, "end_h": end, "amount": urine_amount}],
            "sessions": [
                {"modality": "HD", "start_h": start, "end_h": end, "recovered": session_amount}
            ],
        }
    )


def test_classical_clearances_by_hand():
    case = _case([(2, 8.0), (6, 2.0)])
    est = {e.name: e for e in classical_estimates(case)}
    # AUC 2-6 h log-down 8 -> 2: 6 / (ln4/4) = 17.312 mg.h/L
    auc = 6 / (math.log(4) / 4)
    assert est["cl_renal_urine1"].value == pytest.approx(40 / auc)  # 2.3105 L/h
    assert est["cl_ectr_session1"].value == pytest.approx(10 / auc)  # 0.5776 L/h
    # same window: amount ratio = clearance ratio = 10/40
    assert est["amount_ratio_session1_urine1"].value == pytest.approx(0.25)


def test_single_level_not_computable():
    case = _case([(2, 8.0)])
    est = {e.name: e for e in classical_estimates(case)}
    assert not est["cl_renal_urine1"].computable
    assert "single level" in est["cl_renal_urine1"].reason
    # the amount ratio needs no AUC
    assert est["amount_ratio_session1_urine1"].value == pytest.approx(0.25)
