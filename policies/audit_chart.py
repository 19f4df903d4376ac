"""The auditor's budget chart (``accord audit report --chart``): each report line's cumulative epsilon
over time, with its agreement's per-analyst cap. Needs matplotlib (``pip install 'accord[audit]'``),
imported only when a chart is drawn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from accord.errors import ConfigError, printable

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from accord.policies.audit_report import Report

__all__ = ["write_chart"]


def _label(text: str) -> str:
    """``text`` as matplotlib shows it verbatim (``$`` would start mathematics)."""
    return printable(text or "-").replace("$", r"\$")


def write_chart(report: Report, path: Path) -> None:
    """A PNG at ``path`` of each line's cumulative epsilon over time (a step at each answer), with
    its agreement's per-analyst cap as a dashed line of the same colour when the cap is known.
    Raises :class:`~accord.errors.ConfigError` without matplotlib or when ``path`` cannot be
    written."""
    try:  # imported here: the rest of Accord runs without matplotlib
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(
            "drawing the chart needs matplotlib, which is not installed; install it with "
            "pip install 'accord[audit]', or leave out the chart"
        ) from None
    with matplotlib.rc_context({"date.converter": "concise"}):
        figure = Figure(figsize=(10, 5.5), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)  # the non-interactive Agg backend, leaving pyplot's global state alone
        _draw(figure.add_subplot(), report)
        try:
            figure.savefig(path, format="png")
        except OSError as err:
            raise ConfigError(
                f"{path}: cannot write the chart ({err.__class__.__name__}); pass a writable path"
            ) from None


def _draw(axes: Axes, report: Report) -> None:
    """Draw ``report`` on ``axes``."""
    drawn = [line for line in report.lines if line.series]
    several_nodes = len({line.node for line in drawn}) > 1
    end = max(line.last for line in report.lines) if report.lines else None
    caps_drawn: set[tuple[str, str]] = set()
    for i, line in enumerate(drawn):
        colour = f"C{i % 10}"
        where = f" at {_label(line.node)}" if several_nodes else ""
        label = f"{_label(line.agreement)} / {_label(line.analyst)}{where}"
        times = [line.series[0][0], *(at for at, _ in line.series), end or line.series[-1][0]]
        spent = [0.0, *(float(e) for _, e in line.series), float(line.spent)]  # floats only to draw
        # matplotlib converts datetimes itself, though its stubs list only arrays of numbers
        axes.step(cast(Any, times), spent, where="post", color=colour, label=label)
        if line.budget is not None and (line.node, line.agreement) not in caps_drawn:
            caps_drawn.add((line.node, line.agreement))
            cap = line.budget.per_analyst
            axes.axhline(
                float(cap),
                color=colour,
                linestyle="--",
                linewidth=1,
                label=f"{_label(line.agreement)}{where}: per-analyst cap {cap.display()}",
            )
    if drawn:
        axes.legend(fontsize="small", loc="upper left", ncols=1 + len(drawn) // 12)
    else:
        axes.text(0.5, 0.5, "no answers in the log", ha="center", va="center", transform=axes.transAxes)
    axes.set_title("Epsilon spent over time, per agreement and analyst")
    axes.set_xlabel("time (UTC)")
    axes.set_ylabel("cumulative epsilon")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
