"""`eventually`: the retry policy and its timeout message, on an injected clock (no sleeps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_devloop.run.eventually import eventually


@dataclass
class FakeClock:
    """A clock that moves only when the code under test sleeps."""

    now: float = 100.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@dataclass
class Deployment:
    ready_replicas: int = 0


@dataclass
class Steps:
    """Returns its values one call at a time (raising the exceptions), then the last one."""

    values: list[Any]
    calls: int = 0

    def __call__(self) -> Any:
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        if isinstance(value, BaseException):
            raise value
        return value


def test_returns_the_first_truthy_value_after_falsy_ones() -> None:
    clock = FakeClock()
    fn = Steps([0, None, [], {"ready": 3}])
    assert eventually(fn, clock=clock, sleep=clock.sleep) == {"ready": 3}
    assert fn.calls == 4
    assert clock.sleeps == [0.05, 0.05, 0.05]


def test_assertion_and_lookup_errors_are_retried() -> None:
    clock = FakeClock()
    fn = Steps([AssertionError("not yet"), LookupError("no Deployment 'web'"), "done"])
    assert eventually(fn, interval=0.2, clock=clock, sleep=clock.sleep) == "done"
    assert fn.calls == 3
    assert clock.sleeps == [0.2, 0.2]


def test_other_exceptions_propagate_at_once() -> None:
    clock = FakeClock()
    fn = Steps([ValueError("bug"), True])
    with pytest.raises(ValueError, match="bug"):
        eventually(fn, clock=clock, sleep=clock.sleep)
    assert fn.calls == 1
    assert eventually(Steps([KeyError("k"), 1]), retry_on=(KeyError,), sleep=clock.sleep) == 1


def test_timeout_shows_the_source_the_last_value_and_the_operand() -> None:
    clock = FakeClock()
    web = Deployment(ready_replicas=1)
    with pytest.raises(AssertionError) as info:
        eventually(
            lambda: web.ready_replicas == 3,
            timeout=1.0,
            interval=0.25,
            clock=clock,
            sleep=clock.sleep,
        )
    assert str(info.value).splitlines() == [
        "eventually: not true after 1.00 s (5 tries): lambda: web.ready_replicas == 3",
        "  last value: False",
        "  where web.ready_replicas = 1 (read again)",
    ]
    # Never sleeps past the deadline; the last try happens at it.
    assert clock.sleeps == [0.25, 0.25, 0.25, 0.25]


def test_timeout_shows_the_last_exception_and_chains_it() -> None:
    clock = FakeClock()
    last = AssertionError("expected 3 replicas, found 1")
    fn = Steps([LookupError("no Deployment 'web'"), last])
    with pytest.raises(AssertionError) as info:
        eventually(fn, timeout=0.12, clock=clock, sleep=clock.sleep)
    message = str(info.value)
    assert message.startswith("eventually: not true after 0.12 s (4 tries): ")
    assert "Steps" in message.splitlines()[0]
    assert message.splitlines()[1] == ("  last error: AssertionError: expected 3 replicas, found 1")
    assert info.value.__cause__ is last
    assert clock.sleeps == [0.05, 0.05, 0.02]


def test_the_right_lambda_is_shown_when_a_line_has_several() -> None:
    clock = FakeClock()
    checks = [lambda: 1 > 2, lambda: "a" == "b"]  # noqa: PLR0133 - constant on purpose
    with pytest.raises(AssertionError, match=r"(?m)\(1 try\): lambda: \"a\" == \"b\"$"):
        eventually(checks[1], timeout=0, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_long_values_are_truncated() -> None:
    clock = FakeClock()
    big = ["x" * 1000] * 100
    with pytest.raises(AssertionError) as info:
        eventually(lambda: big == [], timeout=0, clock=clock, sleep=clock.sleep)
    assert len(str(info.value)) < 600


def test_none_means_not_yet_except_for_an_assertion_style_function() -> None:
    clock = FakeClock()
    found: dict[str, str] = {}

    with pytest.raises(AssertionError) as info:
        eventually(lambda: found.get("web"), timeout=0.1, clock=clock, sleep=clock.sleep)
    assert "  last value: None" in str(info.value)
    assert "return True from a check that only asserts" in str(info.value)

    replicas = Steps([1, 2, 3])

    def check() -> None:
        assert replicas() == 3

    assert eventually(check, clock=clock, sleep=clock.sleep) is None
    assert replicas.calls == 3

    def value_or_nothing() -> int | None:
        if replicas.calls < 5:
            replicas.calls += 1
            return None
        return 7

    assert eventually(value_or_nothing, clock=clock, sleep=clock.sleep) == 7


def test_a_named_function_is_shown_by_name() -> None:
    clock = FakeClock()

    def web_is_ready() -> bool:
        return False

    with pytest.raises(AssertionError, match=r"\(1 try\): .*web_is_ready\(\)"):
        eventually(web_is_ready, timeout=0, clock=clock, sleep=clock.sleep)
