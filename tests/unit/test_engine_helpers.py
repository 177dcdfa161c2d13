"""The engine template's constructor-option and polling helpers (storebridge.engine), which every remote
adapter reads its URL and keyword options through."""

from __future__ import annotations

import pytest

from storebridge.engine import count_option, flag_option, option, poll, seconds_option, url_options
from storebridge.errors import ConfigurationError


def test_url_options_refuse_what_the_store_does_not_take() -> None:
    assert url_options({"a": "1"}, {"a", "b"}, "demo") == {"a": "1"}
    with pytest.raises(ConfigurationError, match=r"unknown demo URL options \['tiemout'\]"):
        url_options({"tiemout": "5"}, {"timeout"}, "demo")


@pytest.mark.parametrize(("given", "text"), [(5.0, "5"), (5, "5.0"), (True, "true"), (False, "off"), ("x", "x")])
def test_an_option_given_twice_with_one_meaning_is_accepted(given: object, text: str) -> None:
    assert option("opt", given, text) == given


def test_an_option_given_twice_with_two_meanings_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        option("timeout", 5.0, "7")
    assert option("timeout", None, "7") == "7" and option("timeout", 3, None) == 3


@pytest.mark.parametrize(("value", "expected"), [(None, 9.0), ("2.5", 2.5), (0, 0.0), (3, 3.0)])
def test_seconds_option(value: object, expected: float) -> None:
    assert seconds_option("wait", value, 9.0) == expected


@pytest.mark.parametrize("value", [-1, "soon", True, float("nan")])
def test_seconds_option_names_a_bad_value(value: object) -> None:
    with pytest.raises(ConfigurationError, match="wait must be a non-negative number of seconds"):
        seconds_option("wait", value, 1.0)
    with pytest.raises(ConfigurationError, match="positive"):
        seconds_option("wait", 0, 1.0, zero_ok=False)


def test_count_option_takes_whole_numbers_in_range() -> None:
    assert count_option("n", None, 4) == 4
    assert count_option("n", " 12 ", 4) == 12 and count_option("n", 3.0, 4) == 3
    for bad in (0, "1.5", True, 11, "many"):
        with pytest.raises(ConfigurationError, match="n must be a whole number from 1 to 10"):
            count_option("n", bad, 4, high=10)


def test_flag_option_reads_url_words() -> None:
    assert flag_option("f", "Yes", False) is True and flag_option("f", "0", True) is False
    assert flag_option("f", None, True) is True
    with pytest.raises(ConfigurationError, match="f must be true or false"):
        flag_option("f", "maybe", False)


def test_poll_backs_off_to_a_ceiling_and_stops_at_the_deadline() -> None:
    pauses: list[float] = []
    attempts = []
    for attempt in poll(-1.0, delay=0.1, most=0.3, sleep=pauses.append):
        attempts.append(attempt)
    assert attempts == [0] and pauses == []  # a deadline already past: one try, no pause

    pauses.clear()
    for attempt in poll(60.0, delay=0.1, most=0.3, sleep=pauses.append):
        if attempt == 4:
            break
    assert pauses == pytest.approx([0.1, 0.2, 0.3, 0.3])
