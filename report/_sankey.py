"""A Sankey diagram on matplotlib axes: nodes in columns, and flows between adjacent columns as bands as wide
as their values (matplotlib.sankey draws the in- and outflows of one node, not flows over several levels)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.patches import PathPatch, Rectangle
from matplotlib.path import Path

NODE_WIDTH = 0.02  # of the axes' width
_GAP = 0.04  # between the nodes of a column, of the axes' height
_LABEL_GAP = 0.006
_BAND_CODES = [Path.MOVETO, *[Path.CURVE4] * 3, Path.LINETO, *[Path.CURVE4] * 3, Path.CLOSEPOLY]

Node = tuple[int, str]  # (column, name)


@dataclass(frozen=True)
class Flow:
    column: int  # from a node of this column to a node of the next one
    source: str
    target: str
    value: int


@dataclass(frozen=True)
class _Layout:
    x: list[float]  # each column's left edge
    tops: dict[Node, float]  # each node's top edge, 1 at the top of the axes
    scale: float  # height per unit of value, one for all columns so that equal values look equal


def draw_sankey(
    axes: Axes,
    flows: Sequence[Flow],
    order: Sequence[str],
    colors: Mapping[str, str],
    column_labels: Sequence[str],
) -> None:
    """Draw `flows` (at least one), each column's nodes stacked top-down in `order`; a band takes the colour
    of its target."""
    values = _node_values(flows)
    layout = _layout(values, order)
    last = len(layout.x) - 1
    for (column, name), value in values.items():
        height = value * layout.scale
        label = f"{name} {value:,}"
        _node(axes, layout.x[column], layout.tops[column, name], height, colors[name], label, column == last)
    _bands(axes, flows, order, colors, layout)
    for column, label in enumerate(column_labels):
        axes.text(layout.x[column] + NODE_WIDTH / 2, -0.03, label, ha="center", va="top", fontsize=8)
    axes.set_xlim(0, 1)
    axes.set_ylim(-0.08, 1)
    axes.set_axis_off()


def _node_values(flows: Sequence[Flow]) -> dict[Node, int]:
    """A node's value is what flows through it: its inflow, or its outflow in the first column."""
    inflow: dict[Node, int] = defaultdict(int)
    outflow: dict[Node, int] = defaultdict(int)
    for flow in flows:
        outflow[flow.column, flow.source] += flow.value
        inflow[flow.column + 1, flow.target] += flow.value
    return {node: max(inflow[node], outflow[node]) for node in [*outflow, *inflow]}


def _layout(values: dict[Node, int], order: Sequence[str]) -> _Layout:
    columns: dict[int, list[str]] = defaultdict(list)
    for column, name in sorted(values, key=lambda node: (node[0], order.index(node[1]))):
        columns[column].append(name)

    def room(column: int) -> float:
        return (1 - _GAP * (len(columns[column]) - 1)) / sum(values[column, name] for name in columns[column])

    scale = min(room(column) for column in columns)
    tops: dict[Node, float] = {}
    for column, names in columns.items():
        top = 1.0
        for name in names:
            tops[column, name] = top
            top -= values[column, name] * scale + _GAP
    x = [column / (len(columns) - 1) * (1 - NODE_WIDTH) for column in range(len(columns))]
    return _Layout(x, tops, scale)


def _node(axes: Axes, x: float, top: float, height: float, color: str, label: str, last: bool) -> None:
    axes.add_patch(Rectangle((x, top - height), NODE_WIDTH, height, facecolor=color, edgecolor="none"))
    # the last column's labels go left of their nodes: there is no room right of them
    where, align = (x - _LABEL_GAP, "right") if last else (x + NODE_WIDTH + _LABEL_GAP, "left")
    axes.text(where, top - height / 2, label, ha=align, va="center", fontsize=8)


def _bands(
    axes: Axes, flows: Sequence[Flow], order: Sequence[str], colors: Mapping[str, str], layout: _Layout
) -> None:
    out_offset: dict[Node, float] = defaultdict(float)
    in_offset: dict[Node, float] = defaultdict(float)
    # one pass in (source, target) order stacks each node's outflows by target and its inflows by source,
    # so bands do not cross where they leave or enter a node
    for flow in sorted(flows, key=lambda f: (f.column, order.index(f.source), order.index(f.target))):
        source, target = (flow.column, flow.source), (flow.column + 1, flow.target)
        height = flow.value * layout.scale
        start = (layout.x[flow.column] + NODE_WIDTH, layout.tops[source] - out_offset[source])
        end = (layout.x[flow.column + 1], layout.tops[target] - in_offset[target])
        axes.add_patch(
            PathPatch(_band(start, end, height), facecolor=colors[flow.target], edgecolor="none", alpha=0.4)
        )
        out_offset[source] += height
        in_offset[target] += height


def _band(start: tuple[float, float], end: tuple[float, float], height: float) -> Path:
    """A band `height` high whose top edge runs from `start` to `end`, its edges cubic Bézier curves that
    leave and arrive horizontally."""
    (x0, y0), (x1, y1) = start, end
    middle = (x0 + x1) / 2
    top = [(x0, y0), (middle, y0), (middle, y1), (x1, y1)]
    bottom = [(x1, y1 - height), (middle, y1 - height), (middle, y0 - height), (x0, y0 - height)]
    return Path([*top, *bottom, (x0, y0)], _BAND_CODES)
