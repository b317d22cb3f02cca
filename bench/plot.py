"""Draw the figures of a results.json as PNGs (run by ``.bench-venv/bin/python``, which
has matplotlib; lorag's environment does not need it).

    python bench/plot.py RESULTS_JSON OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def draw(figure: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    if figure["kind"] == "bar":
        labels, series = figure["x"], figure["series"]
        width = 0.8 / max(1, len(series))
        for i, s in enumerate(series):
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
            bars = ax.bar(xs, s["y"], width, label=s["label"])
            ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_xticks(range(len(labels)), labels)
    else:
        for s in figure["series"]:
            ax.plot(s["x"], s["y"], marker="o", label=s["label"])
            for x, y, text in zip(s["x"], s["y"], s.get("annotate", [])):
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    if figure.get("logx"):
        ax.set_xscale("log")
    if figure.get("logy"):
        ax.set_yscale("log")
    ax.set_title(figure["title"], fontsize=10)
    ax.set_xlabel(figure["xlabel"])
    ax.set_ylabel(figure["ylabel"])
    if len(figure["series"]) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(results: Path, out_dir: Path) -> int:
    data = json.loads(results.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    for bench in data["benchmarks"].values():
        for figure in bench.get("figures", []):
            draw(figure, out_dir / figure["file"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
