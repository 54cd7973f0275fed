"""Times as people write them: dates and times since ``time_zero``, anchors to other events.

A case written with dates and anchors loads into the same hours as its hours form; an anchor
whose time is a range stays linked to it, in the design and in the model, draw by draw; every
kind of bad time gets a CaseError naming the file, the block and the field.
"""

import copy
import datetime as dt
import json

import numpy as np
import pytest

from dialyzability.design import case_events, make_batch, structure
from dialyzability.io.case import CaseError, Time, load_case, parse_case
from dialyzability.io.drugs import load_drug

from .conftest import CASES, LEE

BORRAS = CASES / "borrasblasco2007-lithium.toml"
ZERO = dt.datetime(2019, 3, 2, 8, 30)


def at(hours: float) -> dt.datetime:
    return ZERO + dt.timedelta(hours=hours)


def blocks(case):
    return {k: getattr(case, k) for k in ("doses", "concentrations", "urine", "sessions")}


def test_dates_and_anchors_load_as_the_hours_form(lee_raw, write_case):
    """The founding case written with dates, times and anchors to known times is the same case."""
    raw = copy.deepcopy(lee_raw)
    raw["time_zero"] = ZERO
    raw["clock"] = "ingestion"
    raw["doses"][0]["time_h"] = ZERO
    raw["concentrations"][0]["time_h"] = "dose1 + 14"
    raw["urine"][0]["start_h"] = [at(2), "level1"]
    raw["sessions"][0]["start_h"] = ["level1", "level1 + 16 h"]
    raw["sessions"][1]["start_h"] = [at(34), at(56)]
    raw["sessions"][2]["start_h"] = ["dose1 + 3480 min", "2019-03-05T20:30:00"]  # ISO text too
    case = load_case(write_case(raw))
    assert blocks(case) == blocks(load_case(LEE))
    assert case.time_zero == ZERO
    assert case.to_json()["time_zero"] == "2019-03-02T08:30:00"


def test_time_zero_with_utc_offsets(lee_raw, write_case):
    tz = dt.timezone(dt.timedelta(hours=1))
    lee_raw["time_zero"] = ZERO.replace(tzinfo=tz)
    lee_raw["concentrations"][0]["time_h"] = at(13).replace(tzinfo=dt.UTC)  # 14 h in +01:00
    assert load_case(write_case(lee_raw)).concentrations[0].time_h == Time(lo=14, hi=14)


def test_offsets_relative_ranges_and_admission(lee_raw, write_case):
    lee_raw["admission_h"] = 2
    lee_raw["concentrations"].append({"time_h": "admission + 30 min", "value": "1 mg/L"})
    lee_raw["concentrations"].append(
        {"time_h": ["session1.end", "session1.end + 2"], "value": "0.5 mg/L"}
    )
    lee_raw["concentrations"].append({"time_h": "session1.start - 1", "value": "0.9 mg/L"})
    case = load_case(write_case(lee_raw))
    assert case.admission_h == Time(lo=2, hi=2)
    assert case.concentrations[1].time_h == Time(lo=2.5, hi=2.5)  # a known anchor: hours
    right_after = case.concentrations[2].time_h  # session 1 ends in [17, 33]
    assert (right_after.lo, right_after.hi) == (17, 35)
    assert (right_after.anchor, right_after.offset) == ("session1.end", (0, 2))
    before = case.concentrations[3].time_h
    assert (before.lo, before.hi, before.anchor, before.offset) == (
        13,
        29,
        "session1.start",
        (-1, -1),
    )


def test_anchored_time_keeps_the_hours_of_its_range(lee_raw, write_case):
    """Anchored to a range, a time has the bounds of the same range in hours and the anchor."""
    lee_raw["concentrations"].append({"time_h": "session2.end + 0.5", "value": "1 mg/L"})
    case = load_case(write_case(lee_raw))
    t = case.concentrations[1].time_h
    assert (t.lo, t.hi) == (34 + 3 + 0.5, 56 + 3 + 0.5)
    assert t.to_json() == {"anchor": "session2.end", "offset": 0.5, "range": [37.5, 59.5]}
    # the anchor changes what the model is, so the compiled-model cache tells them apart
    plain = copy.deepcopy(lee_raw)
    plain["concentrations"][1]["time_h"] = [37.5, 59.5]
    assert structure(case) != structure(load_case(write_case(plain, "plain.toml")))


def test_borras_level_after_the_second_session_is_anchored():
    case = load_case(BORRAS)
    t = case.concentrations[4].time_h
    assert (t.anchor, t.offset, t.lo, t.hi) == ("session2.end", (0, 1), 38, 86)
    events, _, _ = case_events(case)
    assert events.latent()["t_level5_offset"] == (0, 1)
    assert "t_level5" not in events.latent()


def test_window_end_anchored_to_its_own_start(lee_raw, write_case):
    """``end_h = "session1.start + 3"`` is the same as ``duration_h = 3`` (no false 'ends before
    it starts' although the start is a range)."""
    del lee_raw["sessions"][0]["duration_h"]
    lee_raw["sessions"][0]["end_h"] = "session1.start + 3"
    case = load_case(write_case(lee_raw))
    ref = load_case(LEE)
    assert (case.sessions[0].end.lo, case.sessions[0].end.hi) == (17, 33)
    events, _, _ = case_events(case)
    base, offset, _ = events.links[events.labels.index("session1_end")]
    assert events.labels[base] == "session1_start" and offset == Time(lo=3, hi=3)
    want = case_events(ref)[0].resolve({k: 20.0 for k in case_events(ref)[0].latent()})
    got = events.resolve({k: 20.0 for k in events.latent()})
    np.testing.assert_allclose(got, want)


def test_raw_with_dates_survives_json(lee_raw, write_case):
    """A fit keeps the raw case as JSON (dates as text) and parses it again on load."""
    lee_raw["time_zero"] = ZERO
    lee_raw["concentrations"][0]["time_h"] = at(14)
    case = load_case(write_case(lee_raw))
    again = parse_case(json.loads(json.dumps(case.raw, default=str)), case.source)
    assert blocks(again) == blocks(case) and again.time_zero == case.time_zero


def _model_event_times(batch, timing):
    """Event times exactly as the model forms them (model/build.py): the known times plus the
    latent timings scattered into place, for every draw (rows of ``timing``)."""
    rows, cols = batch.timing_scatter()
    base = batch.data["event_time"].ravel()
    out = np.repeat(base[None, :], len(timing), axis=0)
    np.add.at(out, (slice(None), rows), timing[:, cols])
    return out.reshape(len(timing), *batch.data["event_time"].shape)[:, 0, :]


@pytest.mark.parametrize(
    ("time_h", "offset"),
    [(["session2.end", "session2.end + 1"], None), ("session2.end + 0.5", 0.5)],
    ids=["range offset", "fixed offset"],
)
def test_model_moves_an_anchored_level_with_its_anchor(time_h, offset, write_case):
    """On prior draws of the model's latent timings, the anchored level's event time minus the
    anchor's is the offset, for every draw; so is it in the design's resolve (curves, plots)."""
    import tomllib

    import pymc as pm

    from dialyzability.model.build import build_model

    with BORRAS.open("rb") as fh:
        raw = tomllib.load(fh)
    raw["concentrations"][4]["time_h"] = time_h
    case = load_case(write_case(raw, "borras.toml"))
    model = build_model([case])
    prior = pm.sample_prior_predictive(300, model=model.model, var_names=["timing"], random_seed=3)
    timing = prior.prior["timing"].values.reshape(-1, len(model.batch.timings))
    batch = model.batch
    events = batch.events[0]
    times = _model_event_times(batch, timing)
    level, end = events.labels.index("level5"), events.labels.index("session2_end")
    start = events.labels.index("session2_start")
    names = list(events.latent())
    diff = times[:, level] - times[:, end]
    if offset is None:
        np.testing.assert_allclose(diff, timing[:, names.index("t_level5_offset")], atol=1e-12)
        assert diff.min() >= 0 and diff.max() <= 1 and diff.std() > 0.1
    else:
        np.testing.assert_allclose(diff, offset, atol=1e-12)
    # the anchor itself moves (HD 2's start and length are latent), and the level with it
    assert times[:, end].std() > 5
    np.testing.assert_allclose(
        times[:, end] - times[:, start], timing[:, names.index("t_session2_duration")], atol=1e-12
    )
    resolved = events.resolve({n: timing[:, k] for k, n in enumerate(names)})
    np.testing.assert_allclose(resolved[level], times[:, level], atol=1e-12)


def test_batch_of_anchored_cases_keeps_each_link(write_case, lee_raw):
    """Pooled: each case's anchored event moves with its own anchor."""
    lee_raw["concentrations"].append({"time_h": "session3.start - 1", "value": "1 mg/L"})
    lee = load_case(write_case(lee_raw))
    drug = load_drug("baclofen")
    other = lee.model_copy(update={"id": "other"})
    batch = make_batch([lee, other], drug)
    rng = np.random.default_rng(0)
    lo, hi = batch.data["timing_lo"], batch.data["timing_hi"]
    timing = rng.uniform(lo, hi, size=(50, len(lo)))
    rows, cols = batch.timing_scatter()
    base = batch.data["event_time"].ravel()
    out = np.repeat(base[None, :], 50, axis=0)
    np.add.at(out, (slice(None), rows), timing[:, cols])
    out = out.reshape(50, *batch.data["event_time"].shape)
    labels = batch.events[0].labels
    level, start = labels.index("level2"), labels.index("session3_start")
    for c in range(2):
        np.testing.assert_allclose(out[:, c, level] - out[:, c, start], -1.0, atol=1e-12)


def _set(block, index, field, value):
    def mutate(raw):
        raw[block][index][field] = value

    return mutate


def _append_level(time_h):
    def mutate(raw):
        raw["concentrations"].append({"time_h": time_h, "value": "1 mg/L"})

    return mutate


def _both(*mutations):
    def mutate(raw):
        for m in mutations:
            m(raw)

    return mutate


def _top(key, value):
    def mutate(raw):
        raw[key] = value

    return mutate


BAD = {
    "unknown anchor number": (
        _set("concentrations", 0, "time_h", "session9.end + 1"),
        "[[concentrations]] #1",
        "time_h",
        r"unknown anchor 'session9.end'.*3 \[\[sessions\]\]",
    ),
    "unknown anchor name": (
        _set("concentrations", 0, "time_h", "sesion1.end"),
        "[[concentrations]] #1",
        "time_h",
        "unknown anchor 'sesion1.end'",
    ),
    "window without start or end": (
        _set("concentrations", 0, "time_h", "session1 + 2"),
        "[[concentrations]] #1",
        "time_h",
        "session1.start or session1.end",
    ),
    "level with a part": (
        _append_level("level1.end"),
        "[[concentrations]] #2",
        "time_h",
        "a level has one time",
    ),
    "admission without admission_h": (
        _set("doses", 0, "time_h", "admission - 2"),
        "[[doses]] #1",
        "time_h",
        "no admission_h",
    ),
    "cycle of levels": (
        _both(_set("concentrations", 0, "time_h", "level2"), _append_level("level1 + 1")),
        "[[concentrations]] #1",
        "time_h",
        "cycle: level2 -> level1 -> level2",
    ),
    "cycle through a duration": (
        _set("sessions", 0, "start_h", "session1.end - 3"),
        "[[sessions]] #1",
        "start_h",
        "cycle: session1.end -> session1.start -> session1.end",
    ),
    "date without time_zero": (
        _set("doses", 0, "time_h", ZERO),
        "[[doses]] #1",
        "time_h",
        "needs time_zero",
    ),
    "date before time_zero": (
        _both(_top("time_zero", ZERO), _set("concentrations", 0, "time_h", at(-1))),
        "[[concentrations]] #1",
        "time_h",
        "before time_zero",
    ),
    "naive and aware dates": (
        _both(_top("time_zero", ZERO), _set("doses", 0, "time_h", at(1).replace(tzinfo=dt.UTC))),
        "[[doses]] #1",
        "time_h",
        "UTC offset",
    ),
    "date only": (
        _both(_top("time_zero", ZERO), _set("doses", 0, "time_h", dt.date(2019, 3, 2))),
        "[[doses]] #1",
        "time_h",
        "time of day",
    ),
    "bad time_zero": (_top("time_zero", "yesterday"), "", "time_zero", "date and time"),
    "malformed expression": (
        _set("concentrations", 0, "time_h", "session1.end * 2"),
        "[[concentrations]] #1",
        "time_h",
        "cannot read the time",
    ),
    "double sign": (
        _set("concentrations", 0, "time_h", "session1.end + - 2"),
        "[[concentrations]] #1",
        "time_h",
        "cannot read the offset",
    ),
    "offset of the wrong unit": (
        _set("concentrations", 0, "time_h", "session1.end + 2 mg"),
        "[[concentrations]] #1",
        "time_h",
        "cannot read the offset",
    ),
    "range across different anchors": (
        _set("concentrations", 0, "time_h", ["session1.end", "session2.start"]),
        "[[concentrations]] #1",
        "time_h",
        "same event",
    ),
    "range of an anchor and hours": (
        _set("concentrations", 0, "time_h", ["session1.end", 40]),
        "[[concentrations]] #1",
        "time_h",
        "same event",
    ),
    "anchored range lo > hi": (
        _set("concentrations", 0, "time_h", ["session1.end + 2", "session1.end"]),
        "[[concentrations]] #1",
        "time_h",
        "lo > hi",
    ),
    "anchored end before its start": (
        _both(
            _set("sessions", 0, "end_h", "session1.start - 1"),
            lambda raw: raw["sessions"][0].pop("duration_h"),
        ),
        "[[sessions]] #1",
        "end_h",
        "ends before it starts",
    ),
    "anchor to a bad time": (
        _both(_set("doses", 0, "time_h", "noon"), _set("concentrations", 0, "time_h", "dose1")),
        "[[doses]] #1",
        "time_h",
        "unknown anchor 'noon'",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_times_are_rejected(kind, lee_raw, write_case):
    mutate, block, field, match = BAD[kind]
    mutate(lee_raw)
    path = write_case(lee_raw)
    with pytest.raises(CaseError, match=match) as info:
        load_case(path)
    assert (info.value.block, info.value.field) == (block, field)
    assert str(path) in str(info.value)


def test_window_and_its_end_on_one_anchor(lee_raw, write_case):
    """Start and end both anchored to a latent time: ordered by their offsets."""
    lee_raw["sessions"][1]["start_h"] = "session1.end + 1"
    del lee_raw["sessions"][1]["duration_h"]
    lee_raw["sessions"][1]["end_h"] = "session1.end + 4"
    case = load_case(write_case(lee_raw))
    events, _, _ = case_events(case)
    got = events.resolve({k: 20.0 for k in events.latent()})
    where = {label: i for i, label in enumerate(events.labels)}
    assert got[where["session2_end"]] - got[where["session2_start"]] == 3
    lee_raw["sessions"][1]["end_h"] = "session1.end + 0.5"
    with pytest.raises(CaseError, match="ends before it starts"):
        load_case(write_case(lee_raw, "bad.toml"))


def test_a_very_long_chain_of_anchors_is_an_error_not_a_crash(lee_raw, write_case):
    n = 500
    lee_raw["concentrations"] = [
        {"time_h": f"level{i + 2} - 0.01", "value": "1 mg/L"} for i in range(n - 1)
    ] + [{"time_h": "session1.start", "value": "1 mg/L"}]
    with pytest.raises(CaseError, match="nested too deeply") as info:
        load_case(write_case(lee_raw))
    assert info.value.block.startswith("[[concentrations]]")
    # a long chain within the limit is fine, and each link holds
    lee_raw["concentrations"] = lee_raw["concentrations"][-40:]
    lee_raw["concentrations"][:-1] = [
        {"time_h": f"level{i + 2} - 0.01", "value": "1 mg/L"} for i in range(39)
    ]
    case = load_case(write_case(lee_raw, "chain.toml"))
    events, _, _ = case_events(case)
    got = events.resolve({k: 20.0 for k in events.latent()})
    where = {label: i for i, label in enumerate(events.labels)}
    assert got[where["level1"]] == pytest.approx(20.0 - 0.39)


# ------------------------------------------------------------------ random times, any outcome

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_EVENTS = st.sampled_from(
    [
        "dose1",
        "dose2",
        "level1",
        "level2",
        "level3",
        "urine1.start",
        "urine1.end",
        "session1.start",
        "session1.end",
        "session2.start",
        "session2.end",
        "session3.end",
        "session4.start",
        "session1",
        "level1.end",
        "admission",
        "Dose1",
        "sesion1.end",
        "level0",
    ]
)
_OFFSETS = st.sampled_from(
    [
        "",
        " + 0.5",
        " - 1",
        "+2",
        " + 30 min",
        " + 1 d",
        " + x",
        " * 2",
        " + nan",
        " - -1",
        " + 1e400",
        "+ 2 mg",
    ]
)
_VALID = st.builds(
    lambda e, o: e + o,
    st.sampled_from(
        [
            "urine1.start",
            "urine1.end",
            "session1.start",
            "session1.end",
            "session2.start",
            "session2.end",
            "session3.start",
            "level1",
            "dose1",
        ]
    ),
    st.sampled_from(["", " + 0.5", " - 1", " + 30 min", " + 2"]),
)
_POINTS = st.one_of(
    _VALID,
    _VALID,
    _VALID,
    st.integers(-5, 100),
    st.floats(-5, 100),
    st.builds(lambda e, o: e + o, _EVENTS, _OFFSETS),
    st.integers(-48, 200).map(at),
    st.integers(-48, 200).map(lambda h: at(h).isoformat()),
    st.just(dt.date(2019, 3, 2)),
    st.text(max_size=6),
)
_TIMES = st.one_of(_POINTS, st.lists(_POINTS, min_size=1, max_size=3))
_FIELDS = [
    ("doses", 0, "time_h"),
    ("concentrations", 0, "time_h"),
    ("urine", 0, "start_h"),
    ("sessions", 0, "start_h"),
    ("sessions", 1, "start_h"),
    ("sessions", 2, "start_h"),
    ("sessions", 1, "end_h"),
    ("concentrations", 1, "time_h"),
    (None, None, "admission_h"),
]


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    edits=st.lists(st.tuples(st.sampled_from(_FIELDS), _TIMES), min_size=1, max_size=4),
    zero=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_times_load_or_fail_cleanly_and_anchors_hold(edits, zero, seed, tmp_path_factory):
    """Any written time gives a CaseError naming the file, or a case whose design keeps every
    anchored event at its anchor plus its offset, in the design and in the model's scatter."""
    import tomllib

    import tomli_w

    with LEE.open("rb") as fh:
        raw = tomllib.load(fh)
    raw["concentrations"].append({"time_h": 40, "value": "0.3 mg/L"})
    if zero:
        raw["time_zero"] = ZERO
    for (block, index, field), value in edits:
        if block is None:
            raw[field] = value
            continue
        entry = raw[block][index]
        entry[field] = value
        if field == "end_h":
            entry.pop("duration_h", None)
    path = tmp_path_factory.mktemp("times") / "case.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    try:
        case = load_case(path)
    except CaseError as exc:
        assert str(path) in str(exc)
        return
    events, _, _ = case_events(case)
    where = {label: i for i, label in enumerate(events.labels)}
    latent = events.latent()
    rng = np.random.default_rng(seed)
    values = {k: rng.uniform(lo, hi, 64) for k, (lo, hi) in latent.items()}
    times = events.resolve(values)
    for i, t in enumerate(events.times):
        lo, hi = t.lo, t.hi
        assert np.all(np.asarray(times[i]) >= lo - 1e-9) and np.all(
            np.asarray(times[i]) <= hi + 1e-9
        )
        if t.anchor is not None:
            base = where[t.anchor.replace(".", "_")]
            diff = np.asarray(times[i]) - np.asarray(times[base])
            assert np.all(diff >= t.offset[0] - 1e-9) and np.all(diff <= t.offset[1] + 1e-9)
            if t.offset[0] == t.offset[1]:
                np.testing.assert_allclose(diff, t.offset[0], atol=1e-9)
    batch = make_batch([case], load_drug("baclofen"))
    timing = (
        np.stack([values[name] for _, name in batch.timings], axis=1)
        if batch.timings
        else (np.zeros((64, 0)))
    )
    model_times = _model_event_times(batch, timing)
    for i in range(len(events.times)):
        np.testing.assert_allclose(model_times[:, i], np.broadcast_to(times[i], 64), atol=1e-9)


def test_model_graph_predicts_the_anchored_level_at_the_linked_time():
    """The compiled model's predicted levels, at a random point, are the array form's at the
    events resolved by the design (the anchored level at HD 2's end plus its offset)."""
    from dialyzability.design import BatchDesign
    from dialyzability.model.build import build_model
    from dialyzability.pk.closed_form import solve_batch
    from dialyzability.pk.structure import Structure

    case = load_case(BORRAS)
    model = build_model([case], structure=Structure()).model  # one compartment: closed form
    names = ["volume", "cl_renal", "cl_nonrenal", "ka", "bioavailability", "a0"]
    outputs = [*names, "pred_level", "cl_ectr", "timing"]
    graphs = model.replace_rvs_by_values([model[n] for n in outputs])
    f = model.compile_fn(graphs, inputs=model.value_vars, on_unused_input="ignore")
    rng = np.random.default_rng(11)
    point = {k: rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    got = dict(zip(outputs, f(point), strict=True))
    events, design, _ = case_events(case)
    latent = dict(zip(events.latent(), got["timing"], strict=True))
    times = np.array([events.resolve(latent)], dtype=float)
    where = {label: i for i, label in enumerate(events.labels)}
    offset = times[0, where["level5"]] - times[0, where["session2_end"]]
    assert offset == pytest.approx(latent["t_level5_offset"]) and 0 <= offset <= 1
    p = [got[n] for n in names]
    out = solve_batch(times, BatchDesign.stack([design]), p[0], p[1] + p[2], got["cl_ectr"], *p[3:])
    np.testing.assert_allclose(got["pred_level"], out["conc"][0], rtol=1e-10)


def test_a_level_anchored_to_a_vague_admission_moves_with_it(lee_raw, write_case):
    lee_raw["admission_h"] = [1, 3]
    lee_raw["concentrations"].append({"time_h": "admission + 0.5", "value": "1 mg/L"})
    case = load_case(write_case(lee_raw))
    events, _, _ = case_events(case)
    assert events.latent()["t_admission"] == (1, 3)
    times = events.resolve({k: np.linspace(lo, hi, 5) for k, (lo, hi) in events.latent().items()})
    where = {label: i for i, label in enumerate(events.labels)}
    np.testing.assert_allclose(times[where["level2"]] - times[where["admission"]], 0.5)
    # without anything anchored to it, admission is no event of the model
    del lee_raw["concentrations"][1]
    events, _, _ = case_events(load_case(write_case(lee_raw, "plain.toml")))
    assert "admission" not in events.labels
