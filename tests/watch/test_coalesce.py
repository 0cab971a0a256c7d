"""The coalescer as pure logic: a fake clock, no sleeps, no threads."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_devloop.watch.coalesce import Coalescer
from pytest_devloop.watch.loop import args_for_test_process, ignored, outcome_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_nothing_pending_means_no_deadline(clock: FakeClock) -> None:
    c = Coalescer(0.05, 1.0, clock)
    assert not c.pending
    assert c.wait_time() is None
    assert c.take() is None


def test_a_batch_is_ready_after_the_quiet_period(clock: FakeClock) -> None:
    c = Coalescer(0.05, 1.0, clock)
    c.add(["a.yaml"])
    assert c.wait_time() == pytest.approx(0.05)
    clock.advance(0.049)
    assert c.take() is None
    clock.advance(0.001)
    assert c.take() == ["a.yaml"]
    assert not c.pending


def test_each_event_restarts_the_quiet_period_and_paths_are_kept_once_in_order(
    clock: FakeClock,
) -> None:
    c = Coalescer(0.05, 1.0, clock)
    c.add(["b"])
    clock.advance(0.04)
    c.add(["a", "b"])
    clock.advance(0.04)
    assert c.take() is None  # 0.04 since the last event
    clock.advance(0.01)
    assert c.take() == ["b", "a"]


def test_a_steady_stream_of_events_is_cut_at_the_maximum_wait(clock: FakeClock) -> None:
    c = Coalescer(0.05, 1.0, clock)
    c.add(["first"])
    for i in range(24):  # an event every 40 ms never leaves 50 ms of quiet
        clock.advance(0.04)
        c.add([f"e{i}"])
        if c.take() is not None:
            pytest.fail(f"taken early after {i} events")
    clock.advance(0.04)  # 1.0 s after the first event
    batch = c.take()
    assert batch is not None and batch[0] == "first" and len(batch) == 25


def test_events_after_a_take_start_the_next_batch(clock: FakeClock) -> None:
    """Saves during a cycle queue exactly one more cycle: one batch, taken after it."""
    c = Coalescer(0.05, 1.0, clock)
    c.add(["x"])
    clock.advance(0.05)
    assert c.take() == ["x"]
    # the cycle runs 0.5 s; two saves land meanwhile
    clock.advance(0.1)
    c.add(["values.yaml"])
    clock.advance(0.2)
    c.add(["values.yaml"])
    clock.advance(0.2)
    assert c.take() == ["values.yaml"]  # one batch, one cycle
    assert c.take() is None


def test_an_event_with_no_path_still_makes_a_batch(clock: FakeClock) -> None:
    c = Coalescer(0.0, 0.0, clock)
    c.add([])
    assert c.take() == []


def test_max_wait_is_never_shorter_than_the_quiet_period(clock: FakeClock) -> None:
    c = Coalescer(0.5, 0.1, clock)
    c.add(["a"])
    assert c.wait_time() == pytest.approx(0.5)


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Coalescer(-1, 1)


@pytest.mark.parametrize(
    ("path", "skip"),
    [
        ("/p/charts/c/values.yaml", False),
        ("/p/.git/index", True),
        ("/p/.devloop/state/x.json", True),
        ("/p/tests/__pycache__/t.pyc", True),
        ("/p/.pytest_cache/v", True),
        ("/p/charts/c/.values.yaml.swp", True),
        ("/p/charts/c/values.yaml~", True),
        ("/p/charts/c/.#values.yaml", True),
        ("/p/charts/c/4913", True),
        ("/p/tests/test_a.py", False),
    ],
)
def test_editor_and_tool_files_are_ignored(path: str, skip: bool) -> None:
    assert ignored(path) is skip


def test_the_watch_options_are_not_passed_to_the_test_process() -> None:
    args = [
        "--devloop-watch",
        "-x",
        "--devloop-quiet-period",
        "0.1",
        "--devloop-max-wait=2",
        "--devloop-logs",
        "tests/",
    ]
    assert args_for_test_process(args) == ["-x", "tests/"]


def test_results_are_read_from_the_test_process_json_not_its_text(tmp_path: Path) -> None:
    data = {
        "exitstatus": 1,
        "tests": {
            "tests/test_a.py::test_one": {"outcome": "failed", "duration": 0.1},
            "tests/test_a.py::test_two": {"outcome": "passed", "duration": 0.2},
            "tests/test_b.py::test_three": {"outcome": "error", "duration": 0.0},
        },
        "counts": {"failed": 1, "passed": 1, "errors": 1, "deselected": 10},
        "seconds": 0.31,
        "notes": ["devloop: 3 of 13 tests affected by sms-checker → Deployment/a (spec.replicas)"],
    }
    # The text says nothing a regex could use (-q, no -r): the JSON is what counts.
    out = outcome_of(data, "F.E\n", 1, tmp_path, tmp_path / "tests")

    assert out.counts == {"failed": 1, "passed": 1, "errors": 1, "deselected": 10}
    assert out.failed == ["test_a.py::test_one", "test_b.py::test_three"]
    assert out.header == data["notes"]
    assert out.summary_line == "1 failed, 1 passed, 10 deselected, 1 error in 0.31s"
    nothing = outcome_of({"counts": {"deselected": 12}, "seconds": 0.05}, "", 0, tmp_path, tmp_path)
    assert nothing.summary_line == "no tests ran, 12 deselected in 0.05s"


def test_pod_log_colour_follows_color_option_then_no_color_then_the_terminal() -> None:
    from pytest_devloop.watch.loop import log_colour

    assert log_colour("auto", True, "") is True
    assert log_colour("auto", False, "") is False
    assert log_colour("auto", True, "1") is False  # NO_COLOR
    assert log_colour("no", True, "") is False  # --color=no
    assert log_colour("yes", False, "1") is True  # --color=yes wins


def test_a_finished_save_is_ready_after_the_short_settle(clock: FakeClock) -> None:
    # The writer closed the file (or renamed it into place): the save is complete, so the
    # batch waits only `settle` for other files of the same save, not the quiet period.
    c = Coalescer(0.05, 1.0, clock, settle=0.01)
    c.add(["a.yaml"], complete=False)
    clock.advance(0.001)
    c.add(["a.yaml"], complete=True)
    assert c.wait_time() == pytest.approx(0.01)
    clock.advance(0.01)
    assert c.take() == ["a.yaml"]


def test_a_file_still_being_written_keeps_the_quiet_period(clock: FakeClock) -> None:
    # b.yaml was modified and not closed yet: another file's close does not end the batch.
    c = Coalescer(0.05, 1.0, clock, settle=0.01)
    c.add(["b.yaml"], complete=False)
    c.add(["a.yaml"], complete=False)
    c.add(["a.yaml"], complete=True)
    assert c.wait_time() == pytest.approx(0.05)
    clock.advance(0.02)
    assert c.take() is None
    c.add(["b.yaml"], complete=True)
    assert c.wait_time() == pytest.approx(0.01)


def test_open_files_are_forgotten_with_their_batch(clock: FakeClock) -> None:
    # A write never closed (a truncate, an mmap) is cut by the quiet period once; the next
    # batch does not inherit it.
    c = Coalescer(0.05, 1.0, clock, settle=0.01)
    c.add(["b.yaml"], complete=False)
    clock.advance(0.05)
    assert c.take() == ["b.yaml"]
    c.add(["a.yaml"], complete=True)
    assert c.wait_time() == pytest.approx(0.01)


def test_the_settle_is_never_longer_than_the_quiet_period(clock: FakeClock) -> None:
    c = Coalescer(0.0, 1.0, clock, settle=0.01)
    c.add(["a.yaml"], complete=True)
    assert c.wait_time() == 0
