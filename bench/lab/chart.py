"""The report's charts (matplotlib, PNG, no screen needed).

matplotlib is imported when a chart is drawn, not when this module is: it is a
``bench`` extra, and the test suite (``dev`` extra) imports the claims' verdict code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

Point = tuple[float, float]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def lines_by_panel(
    path: Path,
    *,
    panels: list[str],
    series: dict[str, dict[str, list[Point]]],
    labels: dict[str, str],
    xlabel: str,
    ylabel: str,
) -> None:
    """One panel per name in ``panels``; in each, one line per series (x, y points)."""
    plt = _pyplot()
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for index, panel in enumerate(panels):
        ax = axes[index // columns][index % columns]
        for name, by_panel in series.items():
            points = by_panel.get(panel, [])
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=labels.get(name, name))
        ax.set_title(panel)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if len({x for by in series.values() for x, _ in by.get(panel, [])}) > 2:
            ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    handles, names = [], []
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            if name not in names:
                handles.append(handle)
                names.append(name)
    if names:
        fig.legend(handles, names, loc="lower center", ncol=min(3, len(names)), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def bars(
    path: Path,
    *,
    groups: dict[str, dict[str, tuple[float, float, float]]],
    ylabel: str,
    log: bool = False,
) -> None:
    """Grouped bars: ``groups[group][bar] = (median, min, max)``, error bars show the spread."""
    plt = _pyplot()
    names = list(groups)
    bar_names: list[str] = []
    for bars in groups.values():
        bar_names += [b for b in bars if b not in bar_names]
    width = 0.8 / max(1, len(bar_names))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names) * max(1, len(bar_names)) / 2), 4))
    for offset, bar in enumerate(bar_names):
        xs, ys, low, high = [], [], [], []
        for index, group in enumerate(names):
            if bar in groups[group]:
                median, lo, hi = groups[group][bar]
                xs.append(index + offset * width - 0.4 + width / 2)
                ys.append(median)
                low.append(max(0.0, median - lo))
                high.append(max(0.0, hi - median))
        ax.bar(xs, ys, width, yerr=[low, high], capsize=3, label=bar)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    if len(bar_names) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
