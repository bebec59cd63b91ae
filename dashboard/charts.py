"""Plotly figures for the dashboard. One parameterized function, `metric_chart`, draws every
line, scatter and bar chart; two overlays add the Pareto front and flagged steps. No Streamlit.
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
