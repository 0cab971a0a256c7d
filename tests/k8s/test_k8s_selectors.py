"""The one label-selector grammar (`pytest_devloop.k8s.selectors`), as `labels.Parse` reads it."""

from __future__ import annotations

import pytest

from pytest_devloop.k8s.selectors import (
    Requirement,
    SelectorError,
    matches,
    normalize,
    parse_label_selector,
    requirements_of,
)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("app in (web, api)", {"app": "api"}, True),
        ("app notin (web)", {}, True),
        ("app notin (web)", {"app": "web"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("tier>3", {"tier": "4"}, True),
        ("tier>3", {"tier": "3"}, False),
        ("tier>3", {}, False),
        ("tier>3", {"tier": "high"}, False),
        ("tier<3", {"tier": "2"}, True),
        ("tier>3,app=web", {"tier": "9", "app": "web"}, True),
        ("app=", {"app": ""}, True),
        ("", {"anything": "x"}, True),
    ],
)
def test_matches_as_kubernetes_does(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert matches(selector, labels) is expected


def test_numeric_comparisons_are_requirements_not_label_names() -> None:
    assert parse_label_selector("tier>3") == [Requirement("tier", "gt", ("3",))]
    assert parse_label_selector("tier < 10") == [Requirement("tier", "lt", ("10",))]


@pytest.mark.parametrize(
    "bad",
    ["tier>high", "app in ()", "app in web", "a=b,", "=b", "app=b c", "-bad=x", "a=b=c"],
)
def test_bad_selectors_are_refused(bad: str) -> None:
    with pytest.raises(SelectorError, match="unable to parse requirement"):
        parse_label_selector(bad)


def test_normalize_gives_one_text_per_meaning() -> None:
    assert normalize("b=2, a==1") == normalize({"a": "1", "b": "2"}) == "a=1,b=2"
    assert normalize("x in (b,a)") == normalize(
        {"matchExpressions": [{"key": "x", "operator": "In", "values": ["a", "b"]}]}
    )
    assert normalize("tier > 3") == "tier>3"


def test_a_plain_map_is_a_service_selector() -> None:
    assert requirements_of({"app": "web"}) == [Requirement("app", "=", ("web",))]
    assert requirements_of(None) is None
    assert requirements_of({}) == []
