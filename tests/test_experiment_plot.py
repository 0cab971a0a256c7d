"""bench/experiment_plot.py: the experiment's picture, with the proposal's targets."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("matplotlib", reason="the bench extra (pip install -e '.[bench]')")


def load_plot_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "experiment_plot", ROOT / "bench/experiment_plot.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("experiment_plot", module)
    spec.loader.exec_module(module)
    return module


def test_picture_has_every_scenario_each_cycle_and_the_targets(tmp_path: Path) -> None:
    plot = load_plot_module().plot
    rows = [
        {
            "cluster": "embedded",
            "scenario": "A: app replicas 1 -> 3",
            "baseline_s": 4.1,
            "devloop_s": 2.2,
            "watch_s": 0.61,
        },
        {
            "cluster": "embedded",
            "scenario": "B: 50% fault delay",
            "baseline_s": 4.4,
            "devloop_s": 2.4,
            "watch_s": 0.72,
        },
    ]
    written = plot({"rows": rows, "repeat": 5, "machine": "test", "load": "1"}, tmp_path / "exp")

    assert written == [tmp_path / "exp.png", tmp_path / "exp.svg"]
    assert (tmp_path / "exp.png").read_bytes().startswith(b"\x89PNG")
    svg = (tmp_path / "exp.svg").read_text()
    for text in ("target &lt; 15 s", "target &lt; 10 s", "watch cycle", "baseline", "0.6", "4.4"):
        assert text in svg, text
