"""Generated fields: the paths where two renders differ, and keeping the applied value."""

from __future__ import annotations

import copy

from pytest_devloop.sync.unstable import diff_paths, keep_values, path_text, without

FIRST = {
    "kind": "Deployment",
    "metadata": {"name": "web", "annotations": {"checksum/secret": "aaa"}},
    "spec": {
        "replicas": 1,
        "template": {"spec": {"containers": [{"name": "a", "env": [{"value": "x1"}]}]}},
    },
}


def test_diff_paths_goes_as_deep_as_both_shapes_agree() -> None:
    second = copy.deepcopy(FIRST)
    second["metadata"]["annotations"]["checksum/secret"] = "bbb"
    second["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "x2"
    paths = diff_paths(FIRST, second)
    assert paths == [
        ["metadata", "annotations", "checksum/secret"],
        ["spec", "template", "spec", "containers", 0, "env", 0, "value"],
    ]
    assert [path_text(p) for p in paths] == [
        "metadata.annotations.checksum/secret",
        "spec.template.spec.containers[0].env[0].value",
    ]
    assert diff_paths({"a": [1, 2]}, {"a": [1]}) == [["a"]], "lists of other lengths: whole"
    assert diff_paths({"a": 1}, {"b": 1}) == [["a"], ["b"]]
    assert diff_paths(FIRST, copy.deepcopy(FIRST)) == []


def test_keep_values_takes_the_previous_value_at_each_path_only() -> None:
    rendered = copy.deepcopy(FIRST)
    rendered["metadata"]["annotations"]["checksum/secret"] = "new"
    rendered["spec"]["replicas"] = 3  # an input change: stays
    previous = copy.deepcopy(FIRST)
    kept = keep_values(
        rendered,
        [["metadata", "annotations", "checksum/secret"], ["data", "missing"]],
        previous,
    )
    assert kept == [["metadata", "annotations", "checksum/secret"]]
    assert rendered["metadata"]["annotations"]["checksum/secret"] == "aaa"
    assert rendered["spec"]["replicas"] == 3
    previous["metadata"]["annotations"]["checksum/secret"] = "changed later"
    assert rendered["metadata"]["annotations"]["checksum/secret"] == "aaa", "a copy"


def test_without_blanks_the_paths_in_a_copy() -> None:
    out = without(FIRST, [["metadata", "annotations", "checksum/secret"]])
    assert out["metadata"]["annotations"]["checksum/secret"] is None
    assert FIRST["metadata"]["annotations"]["checksum/secret"] == "aaa"
    assert without(FIRST, []) is FIRST
