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


# ------------------------------------------------------------- PKNCA's conventions (rules b-d)


def _nca_case(levels, doses=((0, "1000 mg", "oral"),), urine=(), sessions=()):
    """A case from (time, value or None for below the LLOQ, matrix) levels, (time, amount,
    route) doses, (start, end, amount) urine collections and HD sessions."""
    return parse_case(
        {
            "id": "nca",
            "drug": "default",
            "doses": [{"time_h": t, "amount": a, "route": r} for t, a, r in doses],
            "concentrations": [
                {"time_h": t, "value": f"{c} mg/L", "matrix": m}
                if c is not None
                else {"time_h": t, "matrix": m, "lloq": "0.5 mg/L", "below_lloq": True}
                for t, c, m in levels
            ],
            "urine": [{"start_h": s, "end_h": e, "amount": a} for s, e, a in urine],
            "sessions": [
                {"modality": "HD", "start_h": s, "end_h": e, "recovered": a} for s, e, a in sessions
            ],
        }
    )


def test_brief_example_log_down():
    # levels 10 and 5 mg/L at 0 and 4 h: log-down AUC = (10 - 5) * 4 / ln(10/5) = 28.854 mg.h/L
    assert segment_auc(0, 10, 4, 5, 0, 4) == pytest.approx(28.853901, rel=1e-7)


def test_a_dose_inside_the_window_is_not_computable():
    """Levels 10 and 5 mg/L at 0 and 4 h would give 28.85 mg.h/L over 0-4 h (log down), but a
    second dose at 2 h lies inside the collection: not computable, the reason naming the dose."""
    case = _nca_case(
        [(0, 10, "plasma"), (4, 5, "plasma")],
        doses=[(-1, "1000 mg", "oral"), (2, "500 mg", "oral")],
        urine=[(0, 4, "20 mg")],
    )
    [est] = classical_estimates(case)
    assert not est.computable and est.auc is None
    assert "a dose at 2 h falls inside the window (0-4 h)" in est.reason
    # a dose whose time is a range reaching into the window: the same
    auc, reason = window_auc([(0, 10), (4, 5)], T(0), T(4), [Time(lo=3, hi=6)])
    assert auc is None and "may fall inside the window" in reason


def test_levels_straddling_a_dose_are_not_interpolated():
    """Levels 10 @ 2 h, 5 @ 4 h (pre-dose), 8 @ 6 h; a second dose at 4 h.

    * window 2-4 h ends at the dose: log down (10 - 5) * 2 / ln 2 = 14.427 mg.h/L;
    * window 4-6 h starts at the (oral) dose: linear up (5 + 8) / 2 * 2 = 13 mg.h/L;
    * window 3-6 h has the dose at 4 h inside it: not computable;
    * with the 4 h level missing, window 2-3 h holds no dose, but its only bracketing levels
      (2 and 6 h) straddle the dose: not computable;
    * an iv bolus at 4 h: the window 4-6 h would start from the pre-dose level: not computable.
    """
    levels = [(2, 10, "plasma"), (4, 5, "plasma"), (6, 8, "plasma")]
    doses = [(0, "1000 mg", "oral"), (4, "500 mg", "oral")]
    case = _nca_case(levels, doses, urine=[(2, 4, "10 mg"), (4, 6, "10 mg"), (3, 6, "10 mg")])
    first, second, third = classical_estimates(case)
    assert first.auc == pytest.approx(5 * 2 / math.log(2))  # 14.427
    assert second.auc == pytest.approx(13.0)
    assert not third.computable and "dose at 4 h falls inside" in third.reason
    # levels at 2 h and 6 h only: window 2-3 h does not contain the dose at 4 h, but the only
    # segment bracketing it runs across the dose
    auc, reason = window_auc([(2, 10), (6, 8)], T(2), T(3), [Time(lo=4, hi=4)])
    assert auc is None and "straddle a dose at 4 h" in reason
    # an iv bolus at 4 h: the level at 4 h is pre-dose, the one just after is not measured
    iv = _nca_case(levels, [(0, "1000 mg", "oral"), (4, "500 mg", "iv")], urine=[(4, 6, "1 mg")])
    [est] = classical_estimates(iv)
    assert not est.computable and "iv dose at 4 h" in est.reason


def test_below_lloq_at_the_dose_counts_as_zero():
    """Dose at 0 h; below the LLOQ at 0 h, 4 mg/L at 2 h, 2 mg/L at 6 h; urine 0-6 h, 20 mg.

    The BLQ level at the dose counts as 0 (PKNCA's default for BLQ before the first measurable
    level), so the window is bracketed:
        0-2 h linear up (0 + 4) / 2 * 2        = 4
        2-6 h log down (4 - 2) * 4 / ln 2      = 11.542
        AUC = 15.542 mg.h/L;  CL_R = 20 / 15.542 = 1.2869 L/h
    """
    case = _nca_case(
        [(0, None, "plasma"), (2, 4, "plasma"), (6, 2, "plasma")], urine=[(0, 6, "20 mg")]
    )
    [est] = classical_estimates(case)
    auc = 4 + 2 * 4 / math.log(2)
    assert est.auc == pytest.approx(auc) and est.value == pytest.approx(20 / auc)
    assert est.value == pytest.approx(1.28687, rel=1e-5) and est.matrix == "plasma"


def test_below_lloq_after_the_dose_is_not_zero():
    """A BLQ level at 1 h, after the dose at 0 h, is not imputed: the window 1-6 h is not
    bracketed by quantified levels (2 and 6 h)."""
    case = _nca_case(
        [(1, None, "plasma"), (2, 4, "plasma"), (6, 2, "plasma")], urine=[(1, 6, "20 mg")]
    )
    [est] = classical_estimates(case)
    assert not est.computable and "do not bracket" in est.reason


def test_matrices_are_never_mixed():
    """Plasma 8 @ 2 h and 4 @ 4 h; serum 6 @ 4 h and 3 @ 8 h; dose at 0 h.

    * urine 2-8 h: plasma covers 2-4 h only, serum 4-8 h only: not computable (mixed, the
      curve would jump from 4 to 6 mg/L at 4 h);
    * urine 4-8 h: serum alone, log down (6 - 3) * 4 / ln 2 = 17.312 mg.h/L, CL = 10/17.312;
    * session 2-4 h: plasma alone, log down (8 - 4) * 2 / ln 2 = 11.542 mg.h/L.
    """
    levels = [(2, 8, "plasma"), (4, 4, "plasma"), (4, 6, "serum"), (8, 3, "serum")]
    case = _nca_case(levels, urine=[(2, 8, "10 mg"), (4, 8, "10 mg")], sessions=[(2, 4, "5 mg")])
    mixed, serum, plasma = classical_estimates(case)
    assert not mixed.computable and mixed.matrix is None
    assert "no one matrix" in mixed.reason
    assert "plasma levels: measured levels (2-4 h) do not bracket" in mixed.reason
    assert "serum levels: measured levels (4-8 h) do not bracket" in mixed.reason
    assert serum.matrix == "serum" and serum.auc == pytest.approx(3 * 4 / math.log(2))
    assert serum.value == pytest.approx(10 / 17.312340, rel=1e-6)
    assert serum.label == "Renal clearance, urine #2 (serum levels)"
    assert plasma.matrix == "plasma" and plasma.auc == pytest.approx(4 * 2 / math.log(2))
    assert plasma.label == "HD clearance, session #1"


def test_plasma_is_preferred_when_two_matrices_cover_the_window():
    """Plasma 8 -> 4 and whole blood 10 -> 5 mg/L over 2-4 h both cover the window: the
    plasma curve is used, (8 - 4) * 2 / ln 2 = 11.542 mg.h/L, not the blood one (14.427)."""
    levels = [(2, 10, "blood"), (4, 5, "blood"), (2, 8, "plasma"), (4, 4, "plasma")]
    [est] = classical_estimates(_nca_case(levels, urine=[(2, 4, "10 mg")]))
    assert est.matrix == "plasma" and est.auc == pytest.approx(8 / math.log(2))
    only_blood = classical_estimates(_nca_case(levels[:2], urine=[(2, 4, "10 mg")]))[0]
    assert only_blood.matrix == "blood" and only_blood.auc == pytest.approx(10 / math.log(2))
    assert "(whole-blood levels)" in only_blood.label


def test_pknca_blq_first_keep_middle_drop():
    """PKNCA, tests/testthat/test-auc.R, "pk.calc.auc: Confirm BLQ in the middle or end are
    calculated correctly" (humanpred/pknca):

        pk.calc.auc(conc=c(0, 2, 0, 1, 2, 1, 0, 0), time=0:7, interval=c(0, 7),
                    lambda.z=1, auc.type="AUClast",
                    conc.blq=list(first="keep", middle="drop", last="keep"),
                    method="lin up/log down")
        == 1+2/log(2)+1.5+1/log(2)

    AUClast runs to the last quantified level (5 h), so it integrates the same points as a
    window 0-5 h here: the BLQ at the dose (0 h) kept as 0, the one at 2 h dropped:
        0-1 linear up 0 -> 2: 1;  1-3 log down 2 -> 1: 2/ln 2;  3-4 linear up 1 -> 2: 1.5;
        4-5 log down 2 -> 1: 1/ln 2;  total 6.8281 mg.h/L.
    """
    conc = [0, 2, 0, 1, 2, 1, 0, 0]
    levels = [(t, c if c > 0 else None, "plasma") for t, c in enumerate(conc)]
    [est] = classical_estimates(_nca_case(levels, urine=[(0, 5, "10 mg")]))
    pknca = 1 + 2 / math.log(2) + 1.5 + 1 / math.log(2)
    assert est.auc == pytest.approx(pknca, rel=1e-12)
    assert est.value == pytest.approx(10 / pknca)
