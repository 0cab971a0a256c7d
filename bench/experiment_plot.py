"""The experiment as a picture: baseline vs devloop vs watch cycle per scenario, with the
proposal's targets as lines (PNG and SVG, for a report).

`python3 bench/experiment.py` draws it after its table; `python3 bench/experiment_plot.py
[bench/results/experiment.json]` redraws it from a results file. Needs matplotlib, the
optional `bench` extra (`pip install -e '.[bench]'`); without it the table alone is printed
and a line says how to get the picture.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# The proposal's targets ("Treatment" rows): scenario A under 15 s, scenario B under 10 s.
TARGETS = {"A": 15.0, "B": 10.0}
# What the proposal measured for the script it replaces (300+ s per change).
CURRENT = 300.0


def plot(result: dict[str, Any], out: Path) -> list[Path] | str:
    """Write `out`.png and `out`.svg; the paths written, or why nothing was."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no picture: matplotlib is missing (pip install -e '.[bench]')"
    rows = result.get("rows") or []
    if not rows:
        return "no picture: no rows"
    series = [("baseline (clean CI cycle)", "baseline_s", "#9e9e9e")]
    series.append(("devloop (pytest --devloop-affected)", "devloop_s", "#1f77b4"))
    if any(r.get("watch_s") for r in rows):
        series.append(("watch cycle (save to result)", "watch_s", "#2ca02c"))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.9 * len(rows) + 2), 4.6))
    width = 0.8 / len(series)
    for i, (label, key, colour) in enumerate(series):
        xs = [n + (i - (len(series) - 1) / 2) * width for n in range(len(rows))]
        values = [float(r.get(key) or 0.0) for r in rows]
        bars = ax.bar(xs, values, width, label=label, color=colour)
        ax.bar_label(bars, labels=[f"{v:.1f}" if v else "-" for v in values], fontsize=7)
    for n, r in enumerate(rows):
        target = TARGETS.get(str(r.get("scenario", ""))[:1])
        if target is not None:
            ax.hlines(target, n - 0.45, n + 0.45, colors="#d62728", linestyles="--")
            ax.annotate(
                f"target < {target:.0f} s",
                (n + 0.45, target),
                fontsize=7,
                color="#d62728",
                ha="right",
                va="bottom",
            )
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['scenario']}\n{r['cluster']}" for r in rows], fontsize=8)
    ax.set_ylabel("seconds from edit to test result (median)")
    ax.set_title(
        f"Proposal experiment: median of {result.get('repeat', '?')} "
        f"(current script: {CURRENT:.0f}+ s per change)",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper left")
    ax.set_ylim(0, max(max(TARGETS.values()) * 1.25, ax.get_ylim()[1]))
    fig.text(0.01, 0.01, f"{result.get('machine', '')}, load {result.get('load', '?')}", fontsize=6)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    written = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for path in written:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return written


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else Path(__file__).parent / "results" / "experiment.json"
    done = plot(json.loads(source.read_text()), source.with_suffix(""))
    print(done if isinstance(done, str) else "written: " + ", ".join(map(str, done)))
    return 1 if isinstance(done, str) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
