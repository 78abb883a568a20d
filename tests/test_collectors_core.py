"""The pure parts of the collectors: rates, CPU percentages, health and backoff, documents, settings."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vfsd.collectors.documents import DocumentError, check_documents, deep_merge, document_path, safe_segment
from vfsd.collectors.health import FAILED, HUNG, OK, STARTING, Health, backoff_delay_s
from vfsd.collectors.rates import CounterRates, counter_increase, counter_rate, cpu_percentages
from vfsd.collectors.settings import ENV, parse
from vfsd.config import ConfigError

# -- rates -------------------------------------------------------------------------------


def test_rate_from_synthetic_counter() -> None:
    rates = CounterRates()
    assert rates.rate("rx", 1000, 10.0) is None  # first sample: no rate, not a made-up zero
    assert rates.rate("rx", 6000, 15.0) == 1000.0
    assert rates.rate("rx", 6000, 20.0) == 0.0
    assert rates.rate("rx", 8500, 20.5) == 5000.0


def test_counter_reset_counts_the_new_value_as_the_increase() -> None:
    rates = CounterRates()
    rates.rate("rx", 10_000_000, 0.0)
    rates.rate("rx", 10_005_000, 5.0)
    # The NIC driver reloaded: the counter restarted from zero and reached 2500 within the interval.
    assert rates.rate("rx", 2500, 10.0) == 500.0
    assert rates.rate("rx", 7500, 15.0) == 1000.0  # and counting resumes normally from the new base


def test_32bit_wrap_is_treated_as_a_reset_not_as_a_huge_spike() -> None:
    rates = CounterRates()
    rates.rate("rx", 2**32 - 100, 0.0)
    assert rates.rate("rx", 400, 1.0) == 400.0  # never a negative rate, never ~4 GB/s


def test_time_that_does_not_advance_yields_no_rate_and_keeps_the_older_sample() -> None:
    rates = CounterRates()
    rates.rate("c", 100, 1.0)
    assert rates.rate("c", 150, 1.0) is None
    assert rates.rate("c", 150, 0.5) is None  # a clock that went backwards
    assert rates.rate("c", 300, 2.0) == 200.0  # measured from the sample at t=1.0


def test_retain_forgets_counters_that_disappeared() -> None:
    rates = CounterRates()
    for key in ("eth0", "eth1", "veth9"):
        rates.rate(key, 1, 0.0)
    rates.retain(["eth0"])
    assert len(rates) == 1
    assert rates.rate("veth9", 50, 1.0) is None  # a re-created interface starts over


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.floats(0.001, 100)), min_size=2, max_size=40))
def test_rates_are_never_negative_and_match_the_reference(samples: list[tuple[int, float]]) -> None:
    rates = CounterRates()
    now = 0.0
    previous: int | None = None
    for value, step in samples:
        now += step
        got = rates.rate("k", value, now)
        if previous is None:
            assert got is None
        else:
            assert got is not None and got >= 0
            expected = (value - previous if value >= previous else value) / step
            assert math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-6)
        previous = value


def test_counter_helpers() -> None:
    assert counter_increase(10, 15) == 5
    assert counter_increase(10, 3) == 3
    assert counter_rate(0, 1.0, 10, 1.0) is None
    assert counter_rate(0, 0.0, 10, 2.0) == 5.0


def test_cpu_percentages_from_cpu_times() -> None:
    before = {"user": 100.0, "nice": 0.0, "system": 50.0, "idle": 800.0, "iowait": 50.0, "guest": 5.0}
    after = {"user": 130.0, "nice": 0.0, "system": 60.0, "idle": 850.0, "iowait": 60.0, "guest": 25.0}
    pct = cpu_percentages(before, after)
    assert pct is not None
    # 100 ticks passed (guest is already inside user); 60 idle+iowait -> 40 % busy
    assert pct["cpu_percent"] == pytest.approx(40.0)
    assert pct["user_percent"] == pytest.approx(30.0)
    assert pct["iowait_percent"] == pytest.approx(10.0)
    assert "guest_percent" not in pct
    assert cpu_percentages(after, after) is None
    assert cpu_percentages(after, before) is None


# -- health and backoff -------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay_s(n, 1.0, 60.0) for n in range(0, 9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_delay_s(10_000, 1.0, 60.0) == 60.0


def test_health_transitions_and_document() -> None:
    h = Health("status", "status", 5.0, 10.0)
    assert h.doc()["state"] == STARTING
    assert h.failed(1_000, "OSError: boom") == 1.0
    assert h.failed(2_000, "OSError: boom") == 2.0
    doc = h.doc()
    assert (doc["state"], doc["failures"], doc["failures_total"], doc["next_retry_ms"]) == (FAILED, 2, 2, 4_000)
    assert h.succeeded(3_000, 12, documents=7) is True  # recovered
    doc = h.doc()
    assert (doc["state"], doc["failures"], doc["failures_total"], doc["last_error"]) == (OK, 0, 2, None)
    assert (doc["next_retry_ms"], doc["last_success_ms"], doc["last_duration_ms"], doc["documents"]) == (None, 3_000, 12, 7)
    assert h.succeeded(4_000, 12, documents=7) is False
    h.hung("still running")
    assert h.doc()["state"] == HUNG
    assert h.hung_returned(9_000, 5_000) == 1.0
    assert h.doc()["state"] == FAILED and h.doc()["last_error"] == "still running"


def test_failure_logging_is_rate_limited() -> None:
    h = Health("x", "status", 1.0, 1.0, log_every_s=60.0)
    assert h.should_log_failure(0.0) == (True, 0)
    assert [h.should_log_failure(t)[0] for t in (1.0, 2.0, 59.0)] == [False, False, False]
    assert h.should_log_failure(60.0) == (True, 3)
    h.succeeded(0, 1, 1)
    assert h.should_log_failure(61.0) == (True, 0)  # a new failure streak is logged at once


def test_health_document_is_rewritten_on_state_change_or_refresh_only() -> None:
    h = Health("x", "status", 1.0, 1.0, refresh_s=60.0)
    assert h.due_for_write(0.0)
    h.succeeded(0, 5, 3)
    assert h.due_for_write(1.0)  # starting -> ok
    h.succeeded(1000, 6, 3)
    assert not h.due_for_write(2.0)  # only timings changed
    assert h.due_for_write(61.0)  # refresh
    h.failed(2000, "boom")
    assert h.due_for_write(62.0)


# -- documents ----------------------------------------------------------------------------


def test_check_documents_normalises_and_accepts_json() -> None:
    docs = check_documents({"cpu": {"a": (1, 2.5), "b": None, "c": True, "d": {"e": "x"}}, "": {}})
    assert docs == {"cpu": {"a": [1, 2.5], "b": None, "c": True, "d": {"e": "x"}}, "": {}}


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        ([("cpu", {})], "mapping"),
        ({"cpu": [1]}, "JSON object"),
        ({"/abs": {}}, "relative"),
        ({"a/../b": {}}, "'.' and '..'"),
        ({"a//b": {}}, "empty segment"),
        ({"a/": {}}, "trailing slash"),
        ({"a\nb": {}}, "control"),
        ({1: {}}, "must be a str"),
        ({"cpu": {"x": float("nan")}}, "finite"),
        ({"cpu": {"x": {1, 2}}}, "set at $.x"),
        ({"cpu": {1: 2}}, "not a string"),
        ({"cpu": {"x": 2**70}}, "64-bit"),
        ({"cpu": {"x": b"raw"}}, "bytes at $.x"),
    ],
)
def test_check_documents_refuses_what_is_not_json(docs: object, message: str) -> None:
    with pytest.raises(DocumentError, match=None) as info:
        check_documents(docs)
    assert message in str(info.value)


def test_deep_merge_and_paths() -> None:
    merged = deep_merge([{"capacity": {"cpu_cores": 8}, "a": 1}, {"capacity": {"gpus": 2}, "a": 2}])
    assert merged == {"capacity": {"cpu_cores": 8, "gpus": 2}, "a": 2}
    assert document_path("/hw", "n1", "") == b"/hw/n1"
    assert document_path("/hw", "n1", "disks/sda1") == b"/hw/n1/disks/sda1"
    assert safe_segment("server:/export") == "server:_export"
    assert safe_segment("..") == "_.."


# -- settings -----------------------------------------------------------------------------


def test_settings_defaults_and_per_collector_tables() -> None:
    s = parse({})
    assert (s.enabled, s.timeout_s, s.backoff_initial_s, s.backoff_max_s) == (True, 10.0, 1.0, 60.0)
    s = parse({"timeout_s": 3, "status": {"interval_s": 0.5, "enabled": False}, "props": {"reserved_cpu_cores": 1}})
    assert s.timeout_s == 3.0
    assert s.for_collector("status").interval_s == 0.5 and not s.for_collector("status").enabled
    assert dict(s.for_collector("props").options) == {"reserved_cpu_cores": 1}
    assert s.for_collector("unknown").enabled


def test_environment_switch_overrides_the_file() -> None:
    assert parse({"enabled": True}, {ENV: "off"}).enabled is False
    assert parse({"enabled": False}, {ENV: "on"}).enabled is True
    assert parse({"enabled": False}, {ENV: ""}).enabled is False
    with pytest.raises(ConfigError, match="VFSD_COLLECTORS"):
        parse({}, {ENV: "maybe"})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"interval_s": 5}, "unknown setting [collectors] interval_s"),
        ({"timeout_s": 0}, "positive"),
        ({"timeout_s": "10"}, "number of seconds"),
        ({"status": {"interval_s": -1}}, "[collectors.status] interval_s"),
        ({"status": {"enabled": "perhaps"}}, "[collectors.status] enabled"),
        ({"backoff_initial_s": 10, "backoff_max_s": 1}, "backoff_max_s"),
    ],
)
def test_settings_errors_name_the_key(table: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(table)
    assert message in str(info.value)


def test_cpu_percentages_survive_a_mode_that_goes_backwards() -> None:
    # Linux's iowait may decrease between samples; the other modes still give a busy figure.
    before = {"user": 10.0, "system": 5.0, "idle": 80.0, "iowait": 5.0}
    after = {"user": 14.0, "system": 6.0, "idle": 85.0, "iowait": 4.5}
    pct = cpu_percentages(before, after)
    assert pct is not None
    assert pct["cpu_percent"] == 50.0 and pct["iowait_percent"] == 0.0
    assert cpu_percentages(after, after) is None  # no time passed
