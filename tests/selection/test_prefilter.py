"""--devloop-affected leaves a test file uncollected only when all its tests are unaffected.

Driven as a user drives it (`python -m pytest` on a copy of the example project, one
embedded cluster for the module). Every test file of the copy appends its name to
`imported.log` when it is imported, so each test sees which files pytest imported.
The pure parts of `selection.prefilter` are tested at the end.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_devloop.selection import impact, prefilter
from tests.selection.test_selection_scenarios import Project

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "example_project"
VALUES = "charts/sms-checker/values.yaml"
MARK = (
    "\nimport pathlib as _p\n"
    "with _p.Path(__file__).parents[1].joinpath('imported.log').open('a') as _f:\n"
    "    _f.write(_p.Path(__file__).name + '\\n')\n"
)
ALL_FILES = {
    "test_manifests.py",
    "test_monitoring.py",
    "test_replicas.py",
    "test_routing.py",
    "test_services.py",
}


class Example(Project):
    def imported(self) -> set[str]:
        log = self.path / "imported.log"
        names = set(log.read_text().split()) if log.exists() else set()
        log.unlink(missing_ok=True)
        return names

    def index(self) -> dict[str, object]:
        files = sorted((self.path / ".devloop" / "records").glob("*.json"))
        data: dict[str, object] = json.loads(files[0].read_text())
        return data


@pytest.fixture(scope="module")
def example(
    tmp_path_factory: pytest.TempPathFactory, tool: Callable[[str], str]
) -> Iterator[Example]:
    path = tmp_path_factory.mktemp("prefilter") / "example"
    shutil.copytree(EXAMPLE, path, ignore=shutil.ignore_patterns(".devloop"))
    for test in (path / "tests").glob("test_*.py"):
        test.write_text(test.read_text() + MARK)
    project = Example(path, tool("helm4"))
    try:
        first = project.pytest()
        assert first.ret == 0, str(first)
        assert project.imported() == ALL_FILES
        yield project
    finally:
        project.stop()


def test_unaffected_files_are_not_imported_affected_and_new_ones_are(example: Example) -> None:
    example.edit(VALUES, "app:\n  replicas: 1", "app:\n  replicas: 3")
    new = example.path / "tests" / "test_new.py"
    new.write_text("def test_new():\n    assert True\n" + MARK)
    try:
        run = example.affected()
        assert run.ret == 0, str(run)
        imported = example.imported()
        assert imported == {"test_replicas.py", "test_services.py", "test_new.py"}, str(run)
        assert "tests/test_new.py::test_new" in run.ran()
        assert "tests/test_replicas.py::test_app_runs_the_requested_replicas" in run.ran()
        assert not any(n.startswith("tests/test_routing.py") for n in run.ran())
        # The header counts the tests of uncollected files; --devloop-explain names them.
        assert " of 13 tests " in run.header(), run.header()
        run.stdout.fnmatch_lines(["devloop: skip tests/test_routing.py::* not affected*"])
        # pytest's own lines: what it collected, and every unselected test as deselected.
        run.stdout.fnmatch_lines(
            ["collected 5 items / 2 deselected / 3 selected", "*3 passed, 10 deselected*"]
        )
    finally:
        new.unlink()
        example.edit(VALUES, "app:\n  replicas: 3", "app:\n  replicas: 1")
        assert example.affected().ret == 0
        example.imported()


def test_nothing_affected_imports_no_test_file_and_is_green(example: Example) -> None:
    run = example.affected()
    assert run.ret == 0, str(run)
    assert example.imported() == set()
    run.stdout.fnmatch_lines(["devloop: nothing affected; 12 tests passed last time*"])


def test_an_edited_test_file_is_collected_and_its_new_test_runs(example: Example) -> None:
    path = example.path / "tests" / "test_routing.py"
    original = path.read_text()
    path.write_text(original + "\n\ndef test_added():\n    assert True\n")
    try:
        run = example.affected()
        assert run.ret == 0, str(run)
        assert example.imported() == {"test_routing.py"}
        assert "tests/test_routing.py::test_added" in run.ran()
    finally:
        path.write_text(original)
        assert example.affected().ret == 0
        example.imported()


def test_a_file_with_a_missing_record_is_collected_and_run(example: Example) -> None:
    records = sorted((example.path / ".devloop" / "records").glob("*.json"))[0]
    data = json.loads(records.read_text())
    nodeid = "tests/test_monitoring.py::test_service_monitor_selects_the_app_service"
    del data["tests"][nodeid]
    records.write_text(json.dumps(data))
    run = example.affected()
    assert run.ret == 0, str(run)
    assert example.imported() == {"test_monitoring.py"}
    assert nodeid in run.ran()


def test_a_changed_helper_module_collects_every_file(example: Example) -> None:
    helper = example.path / "tests" / "helpers.py"
    helper.write_text("NAME = 'app'\n")
    path = example.path / "tests" / "test_services.py"
    original = path.read_text()
    path.write_text("import helpers  # noqa: F401\n" + original)
    try:
        assert example.affected().ret == 0
        example.imported()
        assert "tests/helpers.py" in example.index()[prefilter.MODULES_KEY]  # type: ignore[operator]
        helper.write_text("NAME = 'model'\n")
        run = example.affected()
        assert run.ret == 0, str(run)
        assert example.imported() == ALL_FILES
    finally:
        path.write_text(original)
        helper.unlink()
        assert example.pytest().ret == 0  # a full run: the index forgets the helper
        example.imported()
    assert "tests/helpers.py" not in example.index()[prefilter.MODULES_KEY]  # type: ignore[operator]


def test_a_test_file_parametrized_from_a_data_file_is_collected_when_the_data_changes(
    example: Example,
) -> None:
    # The file's own digest does not change when its data file does: the data file read
    # while collecting joins the index, and a new case in it is collected and run.
    data = example.path / "tests" / "cases.txt"
    data.write_text("a\nb\n")
    path = example.path / "tests" / "test_cases.py"
    path.write_text(
        "import pathlib, pytest\n"
        "CASES = (pathlib.Path(__file__).parent / 'cases.txt').read_text().split()\n"
        "@pytest.mark.parametrize('case', CASES)\n"
        "def test_case(case):\n    assert case\n" + MARK
    )
    try:
        assert example.affected().ret == 0
        example.imported()
        assert example.affected().ret == 0
        assert "test_cases.py" not in example.imported(), "nothing changed: not collected"
        data.write_text("a\nb\nc\n")
        run = example.affected()
        assert run.ret == 0, str(run)
        assert "test_cases.py" in example.imported()
        assert "tests/test_cases.py::test_case[c]" in run.ran()
    finally:
        path.unlink()
        data.unlink()
        assert example.pytest().ret == 0
        example.imported()


# -- the pure parts ------------------------------------------------------------------------------


def _record(digest: str, outcome: str = "passed") -> impact.TestRecord:
    return impact.TestRecord.from_json(
        {"objects": {}, "lists": [], "declared": [], "outcome": outcome, "file_digest": digest},
        "x",
    )


def test_plan_skips_only_files_whose_every_test_is_recorded_and_unaffected(tmp_path: Path) -> None:
    index = {
        "t/test_a.py": {"digest": "A", "nodeids": ["t/test_a.py::one", "t/test_a.py::two"]},
        "t/test_b.py": {"digest": "B", "nodeids": ["t/test_b.py::one"]},  # file changed
        "t/test_c.py": {"digest": "C", "nodeids": ["t/test_c.py::one"]},  # failed last time
        "t/test_d.py": {"digest": "D", "nodeids": ["t/test_d.py::one"]},  # no record
    }
    records: dict[str, impact.TestRecord | None] = {
        "t/test_a.py::one": _record("A"),
        "t/test_a.py::two": _record("A"),
        "t/test_b.py::one": _record("B"),
        "t/test_c.py::one": _record("C", "failed"),
    }
    current = {"t/test_a.py": "A", "t/test_b.py": "B2", "t/test_c.py": "C", "t/test_d.py": "D"}
    out = prefilter.plan(
        index, {}, records, impact.Impact(), root=tmp_path, digest_of=current.__getitem__
    )
    assert out.skip == {"t/test_a.py"}
    assert [d.nodeid for d in out.decisions] == ["t/test_a.py::one", "t/test_a.py::two"]
    assert not any(d.run for d in out.decisions)


def test_plan_skips_nothing_when_a_helper_module_changed_or_is_gone(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("X = 1\n")
    index = {"test_a.py": {"digest": "A", "nodeids": ["test_a.py::one"]}}
    records: dict[str, impact.TestRecord | None] = {"test_a.py::one": _record("A")}
    same = {"helpers.py": prefilter.module_digest(tmp_path / "helpers.py")}
    kwargs = {"root": tmp_path, "digest_of": lambda f: "A"}
    assert prefilter.plan(index, same, records, impact.Impact(), **kwargs).skip == {"test_a.py"}  # type: ignore[arg-type]
    (tmp_path / "helpers.py").write_text("X = 2\n")
    changed = prefilter.plan(index, same, records, impact.Impact(), **kwargs)  # type: ignore[arg-type]
    assert changed.skip == set() and changed.reason == "helpers.py changed"
    (tmp_path / "helpers.py").unlink()
    assert prefilter.plan(index, same, records, impact.Impact(), **kwargs).skip == set()  # type: ignore[arg-type]


def test_merge_drops_failed_files_and_replaces_modules_only_after_a_complete_run() -> None:
    old = {"a.py": {"digest": "1", "nodeids": ["a.py::t"]}, "b.py": {"digest": "2", "nodeids": []}}
    index, modules = prefilter.merge(
        old,
        {"h.py": "9"},
        {"c.py": ("3", ["c.py::t"], None)},
        ["b.py"],
        {"g.py": "8"},
        complete=False,
    )
    assert index == {
        "a.py": old["a.py"],
        "c.py": {"digest": "3", "nodeids": ["c.py::t"], "reads": None},
    }
    assert modules == {"h.py": "9", "g.py": "8"}
    _, modules = prefilter.merge(old, {"h.py": "9"}, {}, [], {"g.py": "8"}, complete=True)
    assert modules == {"g.py": "8"}


def test_a_files_merged_reads_decide_for_all_its_tests(tmp_path: Path) -> None:
    key = "apps/Deployment/ns/web"
    raw = {
        "t.py::a": {"objects": {key: ["spec.replicas"]}, "outcome": "passed", "file_digest": "D"},
        "t.py::b": {"objects": {key: []}, "outcome": "passed", "file_digest": "D"},
    }
    reads = prefilter.summarize(raw, list(raw), "D")
    assert reads is not None
    assert sorted(map(tuple, reads["objects"])) == [(key, []), (key, ["spec.replicas"])]
    index = {"t.py": {"digest": "D", "nodeids": list(raw), "reads": reads}}
    records = {n: impact.TestRecord.from_json(r, n) for n, r in raw.items()}
    replicas = impact.Impact(fields={key: ["spec.replicas"]}, changed={key: ["spec.replicas"]})
    image = impact.Impact(
        fields={key: ["spec.template.spec.containers"]},
        changed={key: ["spec.template.spec.containers"]},
    )
    kwargs: dict[str, Any] = {"root": tmp_path, "digest_of": lambda f: "D"}
    assert prefilter.plan(index, {}, records, replicas, **kwargs).skip == set()
    assert prefilter.plan(index, {}, records, image, **kwargs).skip == {"t.py"}
    # A test that failed, is marked always, or has no record: no summary, the file runs.
    for change in ({"outcome": "failed"}, {"always": True}, {"file_digest": "E"}):
        assert (
            prefilter.summarize({**raw, "t.py::b": {**raw["t.py::b"], **change}}, raw, "D") is None
        )
    assert prefilter.summarize({"t.py::a": raw["t.py::a"]}, list(raw), "D") is None
    index["t.py"]["reads"] = None
    assert prefilter.plan(index, {}, records, image, **kwargs).skip == set()
