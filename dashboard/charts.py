"""Plotly figures for the dashboard. One parameterized function, `metric_chart`, draws every
line, scatter and bar chart; two overlays add the Pareto front and flagged steps; the Precision page
has its own three (scan curves, overflows per layer, value ranges per layer), the Kernels page its
ratio heatmap. No Streamlit.
"""

from __future__ import annotations

from typing import Literal, Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from yukti.dashboard.data import metric_label

Kind = Literal["line", "scatter", "bar"]

# One colour per backend on every page (plotly would otherwise colour by order of appearance, so
# cpp would be blue on one chart and red on the next).
BACKEND_ORDER = ["reference", "onnxruntime", "torch", "torch_aot", "cpp", "hls4ml", "keras"]
PALETTE = px.colors.qualitative.Plotly + px.colors.qualitative.Dark24


def color_map(values: Sequence[object]) -> dict[str, str]:
    """Known backends keep fixed colours; other values take the next free ones, in sorted order."""
    names = sorted({str(v) for v in values})
    mapping = {n: PALETTE[BACKEND_ORDER.index(n)] for n in names if n in BACKEND_ORDER}
    spare = iter(c for c in PALETTE if c not in mapping.values())
    for n in names:
        if n not in mapping:
            mapping[n] = next(spare, PALETTE[len(mapping) % len(PALETTE)])
    return mapping


def metric_chart(frame: pd.DataFrame, x: str, y: str, *, color: str = "label", kind: Kind = "line",
                 log_x: bool = False, log_y: bool = False, hover: Sequence[str] = (), title: str = "",
                 x_title: str | None = None, y_title: str | None = None, text: str | None = None,
                 category_orders: dict[str, list] | None = None, markers: bool = True, height: int = 480) -> go.Figure:
    """`y` against `x`, one trace per value of `color`; `hover` columns appear in the tooltip."""
    hover_data = {c: True for c in hover if c in frame.columns and c not in (x, y, color)}
    categories = {color: sorted(frame[color].astype(str).unique())} if color in frame.columns else {}
    common = dict(x=x, y=y, color=color, hover_data=hover_data, log_x=log_x, log_y=log_y,
                  category_orders={**categories, **(category_orders or {})}, title=title, height=height,
                  color_discrete_map=color_map(frame[color]) if color in ("label", "backend") else None,
                  labels={x: x_title or metric_label(x), y: y_title or metric_label(y), color: color})
    if kind == "bar":
        fig = px.bar(frame, barmode="group", text=text, **common)
    elif kind == "scatter":
        fig = px.scatter(frame, text=text, **common)
        fig.update_traces(marker=dict(size=12, line=dict(width=1, color="white")), textposition="top center")
    else:
        fig = px.line(frame, markers=markers, text=text, **common)
    fig.update_layout(legend_title_text=color, margin=dict(l=10, r=10, t=60 if title else 20, b=10),
                      hovermode="closest")
    return fig


def add_pareto_front(fig: go.Figure, front: pd.DataFrame, x: str, y: str, name: str = "Pareto front") -> go.Figure:
    """A dashed staircase through the non-dominated points (both axes minimized), each named."""
    front = front.sort_values([x, y])
    if front.empty:
        return fig
    # no text labels: the points underneath already carry their backend names
    fig.add_trace(go.Scatter(
        x=front[x], y=front[y], mode="lines+markers", name=name, line=dict(dash="dash", color="black", shape="hv"),
        marker=dict(symbol="circle-open", size=20, color="black"), text=front["label"],
        hovertemplate="Pareto front: %{text}<extra></extra>",
    ))
    return fig


def add_flags(fig: go.Figure, flags: pd.DataFrame, x: str, y: str, name: str = "regression") -> go.Figure:
    """Red crosses on the commits where a line got worse by more than the threshold."""
    if flags.empty:
        return fig
    fig.add_trace(go.Scatter(
        x=flags[x], y=flags[y], mode="markers", name=name, marker=dict(symbol="x", size=16, color="red"),
        customdata=flags[["label", "change"]].to_numpy(),
        hovertemplate="%{customdata[0]}: %{customdata[1]:+.1%} at %{x}<extra>regression</extra>",
    ))
    return fig


# -- the kernel sweep -------------------------------------------------------------------------------

RATIO_TICKS = (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8)


def ratio_span(ratios: Sequence[float] | pd.Series) -> float:
    """The colour range of `ratio_heatmap` in log2 units, symmetric about parity: the largest
    |log2 ratio|, at least 1 (0.5x to 2x) and at most 4 (1/16x to 16x). Computed once over a
    whole sweep, it gives every batch's heatmap the same colours."""
    import numpy as np

    values = pd.to_numeric(pd.Series(list(ratios), dtype=object), errors="coerce").to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(np.log2(values[values > 0]))
    return float(min(max(z[np.isfinite(z)].max(initial=0.0), 1.0), 4.0))


def ratio_heatmap(grid: dict[str, pd.DataFrame], title: str = "", height: int = 460, span: float | None = None) -> go.Figure:
    """A K x N heatmap of the cpp / onnxruntime ratio (`yukti.dashboard.data.kernel_grid`): coloured
    by log2 of the ratio, so 0.5 and 2 are equally far from white at 1; red above 1 (cpp slower),
    blue below; each cell labelled with its ratio, hover adding both times and cpp's GFLOP/s.
    `span`: the colour range (`ratio_span`; default: this grid's own)."""
    import numpy as np

    ratio = grid["ratio"]
    values = ratio.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log2(np.where(values > 0, values, np.nan))
    span = ratio_span(values.ravel()) if span is None else float(span)
    extra = [grid[c].to_numpy(dtype=float) if c in grid else np.full(values.shape, np.nan)
             for c in ("cpp_us", "ort_us", "gflops")]
    ticks = [t for t in RATIO_TICKS if abs(np.log2(t)) <= span + 1e-9]
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(n) for n in ratio.columns], y=[str(k) for k in ratio.index],
        text=[["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in values], texttemplate="%{text}",
        customdata=np.dstack([values, *extra]), colorscale="RdBu_r", zmid=0.0, zmin=-span, zmax=span,
        colorbar=dict(title="cpp / ORT", tickvals=[float(np.log2(t)) for t in ticks],
                      ticktext=[f"{t:g}" if t >= 1 else f"1/{1 / t:g}" for t in ticks]),
        hovertemplate=("K=%{y} × N=%{x}: cpp / onnxruntime %{customdata[0]:.3f}<br>"
                       "cpp %{customdata[1]:.3g} µs · onnxruntime %{customdata[2]:.3g} µs<br>"
                       "cpp %{customdata[3]:.3g} GFLOP/s<extra></extra>")))
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=60 if title else 20, b=10))
    # sizes as categories: 3, 10, 16, ... 256 evenly spaced, in numeric order
    fig.update_xaxes(title="N (outputs)", type="category", categoryorder="array", categoryarray=[str(n) for n in ratio.columns])
    fig.update_yaxes(title="K (inputs)", type="category", categoryorder="array", categoryarray=[str(k) for k in ratio.index])
    return fig


# -- precision scans --------------------------------------------------------------------------------

def _line_order(lines: pd.Series) -> list[str]:
    """"I=2" before "I=10" (string order would not), "per-layer" last."""
    def key(name: str) -> tuple[int, str]:
        digits = name.removeprefix("I=")
        return (int(digits), "") if digits.isdigit() else (10**6, name)
    return sorted({str(v) for v in lines}, key=key)


def precision_curves(rows: pd.DataFrame, y: str, *, reference: float | None = None, log_y: bool = False,
                     title: str = "", height: int = 420) -> go.Figure:
    """`y` against the total bits of a scan's configurations (`yukti.dashboard.data.scan_rows`), one
    line per `line` (integer bits, or "per-layer"); `reference` (the float model's value) as a dashed
    horizontal line; the configurations marked `smallest` as stars."""
    rows = rows[pd.to_numeric(rows[y], errors="coerce").notna()]
    order = _line_order(rows["line"])
    fig = metric_chart(rows, "width", y, color="line", log_y=log_y, title=title, height=height,
                       x_title="total bits W", hover=["config", "precision", "overflows", "meets"],
                       category_orders={"line": order})
    # neighbouring integer bits in clearly different colours (the theme's sequence shades them alike)
    for trace in fig.data:
        trace.update(line_color=PALETTE[order.index(trace.name) % len(PALETTE)])
    if reference is not None and pd.notna(reference) and not rows.empty:
        low, high = float(rows["width"].min()), float(rows["width"].max())
        fig.add_trace(go.Scatter(x=[low, high], y=[reference, reference], mode="lines", name="float reference",
                                 line=dict(dash="dash", color="gray"),
                                 hovertemplate=f"float reference: {reference:.4g}<extra></extra>"))
    best = rows[rows["smallest"].fillna(False).astype(bool)] if "smallest" in rows.columns else rows.iloc[:0]
    if not best.empty:
        fig.add_trace(go.Scatter(x=best["width"], y=best[y], mode="markers+text", name="smallest meeting the bound",
                                 text=best["config"], textposition="top center", cliponaxis=False,
                                 marker=dict(symbol="star", size=20, color="gold", line=dict(width=1, color="black")),
                                 hovertemplate="smallest meeting the bound: %{text}<extra></extra>"))
    # the legend under the plot: these charts sit two to a row, and a legend beside them halves the plot
    fig.update_layout(legend_title_text="integer bits" if any(n.startswith("I=") for n in order) else "",
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
    fig.update_xaxes(tickvals=sorted(rows["width"].unique().tolist()))  # the widths scanned, no others
    return fig


def overflow_chart(counts: pd.DataFrame, title: str = "", height: int = 360) -> go.Figure:
    """Values wrapped or saturated per layer (`yukti.dashboard.data.overflow_counts`), one bar each,
    in layer order."""
    fig = go.Figure(go.Bar(x=counts["layer"].astype(str), y=counts["overflows"], name="overflows",
                           text=counts["overflows"], textposition="outside",
                           hovertemplate="%{x}: %{y} values overflowed<extra></extra>"))
    fig.update_layout(title=title, height=height, xaxis_title="hls4ml layer", yaxis_title="values overflowed",
                      margin=dict(l=10, r=10, t=60 if title else 20, b=10))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=counts["layer"].astype(str).tolist())
    return fig


def range_chart(ranges: pd.DataFrame, title: str = "", height: int | None = None) -> go.Figure:
    """Per layer (`yukti.dashboard.data.layer_ranges`), the result type's representable range as a
    floating bar and, when profiled, the float values' range inside it: a float bar that sticks out
    of its type bar is a layer that overflows."""
    layers = ranges["layer"].astype(str)
    fig = go.Figure(go.Bar(
        y=layers, x=ranges["highest"] - ranges["lowest"], base=ranges["lowest"], orientation="h",
        name="representable by the type", marker=dict(color="rgba(99, 110, 250, 0.35)"),
        customdata=ranges[["type", "lowest", "highest"]],
        hovertemplate="%{y}: %{customdata[0]} holds [%{customdata[1]:.4g}, %{customdata[2]:.4g}]<extra></extra>"))
    if {"float_min", "float_max"} <= set(ranges.columns):
        fig.add_trace(go.Bar(
            y=layers, x=ranges["float_max"] - ranges["float_min"], base=ranges["float_min"], orientation="h",
            name="float values (profile)", marker=dict(color="rgba(239, 85, 59, 0.85)"), width=0.35,
            customdata=ranges[["float_min", "float_max"]],
            hovertemplate="%{y}: float values in [%{customdata[0]:.4g}, %{customdata[1]:.4g}]<extra></extra>"))
    fig.update_layout(title=title, height=height or max(260, 60 + 40 * len(ranges)), barmode="overlay",
                      xaxis_title="value", margin=dict(l=10, r=10, t=60 if title else 20, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0))
    # the first layer on top, as in the model
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=layers.tolist()[::-1])
    return fig
