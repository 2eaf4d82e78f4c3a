"""Drawing handwriting: SVG pages, PNG sheets, attention maps (paper Fig. 13) and mixture densities (Fig. 10).

Every function takes de-normalised lines in the fixed stroke format: float32 `[T, 3]` rows `(dx, dy, eos)`,
offsets from the previous point, y pointing up, `eos = 1` on the last point of each stroke. Row 0 is the
offset of the first point from the line's origin, so absolute points are the running sum of the offsets
(`strokes.offsets_to_strokes`, which also validates the lines: `strokes.check_line`).

Plots use matplotlib's object API (`matplotlib.figure.Figure` with an Agg canvas), never `pyplot`: no global
backend is selected and no figure is registered anywhere, so importing this module changes nothing for other
users of matplotlib (notebooks keep their backend) and it is safe in threads and headless jobs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple
from xml.sax.saxutils import escape

import numpy as np
from matplotlib import animation, colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from handwriting_jax.data import strokes as strokes_lib

PathLike = str | os.PathLike

_INK = "#1a1a2e"  # near-black ink
_CAPTION_IN = 0.28  # caption height per row of a PNG sheet, inches


# ----------------------------------------------------------------------------------------------------------
# Geometry.


def _bounds(strokes: Sequence[np.ndarray]) -> tuple[float, float, float, float]:
  """(xmin, xmax, ymin, ymax) of a list of strokes."""
  allp = np.concatenate(strokes, axis=0)
  return (float(allp[:, 0].min()), float(allp[:, 0].max()), float(allp[:, 1].min()), float(allp[:, 1].max()))


def _check_lines(lines: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
  """Strokes of every line; ValueError (naming the line index) on a bad line or an empty list."""
  if isinstance(lines, np.ndarray) and lines.ndim == 2:
    raise ValueError("lines: expected a list of [T, 3] lines, got a single [T, 3] array; wrap it in a list")
  if len(lines) == 0:
    raise ValueError("lines: empty list, nothing to draw")
  out = []
  for i, line in enumerate(lines):
    strokes_lib.check_line(line, f"lines[{i}]")
    out.append(strokes_lib.offsets_to_strokes(line))
  return out


# ----------------------------------------------------------------------------------------------------------
# SVG.


def _page_layout(strokes_per_line: list[list[np.ndarray]], line_spacing: float | None) -> tuple[list[float], float]:
  """Vertical shift of each line (y up) that stacks them as a page, and the median line height."""
  boxes = [_bounds(s) for s in strokes_per_line]
  heights = [max(b[3] - b[2], 1e-6) for b in boxes]
  median_h = float(np.median(heights))
  shifts = []
  if line_spacing is None:  # stack by bounding boxes with a gap of a third of the median line height
    top = 0.0
    for b in boxes:
      shift = top - b[3]
      shifts.append(shift)
      top = b[2] + shift - median_h / 3.0
  else:  # fixed distance between the lines' origins (baselines)
    shifts = [-i * float(line_spacing) for i in range(len(boxes))]
  return shifts, median_h


def lines_to_svg(
  lines: Sequence[np.ndarray],
  path: PathLike | None = None,
  line_spacing: float | None = None,
  stroke_width: float | None = None,
  margin: float | None = None,
  color: str = "black",
  precision: int = 2,
) -> str:
  """An SVG page of `lines` stacked top to bottom, ONE `<path>` per stroke (pen-plotter friendly).

  Coordinates are stroke units with y flipped to SVG's downward axis; the viewBox is fitted to the content
  plus `margin` (default: a fifth of the median line height). `line_spacing` is the distance between
  consecutive lines' origins (baselines) in stroke units; None stacks the lines' bounding boxes with a gap of
  a third of the median line height. `stroke_width` defaults to 2.5% of the median line height. Each line is a
  `<g id="line-i">`; single-point strokes (dots) become zero-length paths that round caps draw as dots.
  Writes the file when `path` is given; returns the SVG text either way.
  """
  strokes_per_line = _check_lines(lines)
  shifts, median_h = _page_layout(strokes_per_line, line_spacing)
  if stroke_width is None:
    stroke_width = 0.025 * median_h
  if margin is None:
    margin = 0.2 * median_h
  placed = [[s + np.array([0.0, dy]) for s in strokes] for strokes, dy in zip(strokes_per_line, shifts)]
  xmin, xmax, ymin, ymax = _bounds([s for strokes in placed for s in strokes])
  x0, y0 = xmin - margin, -ymax - margin  # SVG y = -y
  width, height = (xmax - xmin) + 2 * margin, (ymax - ymin) + 2 * margin
  fmt = f"{{:.{precision}f}}"

  def pt(p: np.ndarray) -> str:
    return fmt.format(p[0]) + "," + fmt.format(-p[1])

  out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    (
      f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{fmt.format(width)}" '
      f'height="{fmt.format(height)}" viewBox="{fmt.format(x0)} {fmt.format(y0)} {fmt.format(width)} '
      f'{fmt.format(height)}">'
    ),
    (
      f'<g fill="none" stroke="{escape(color)}" stroke-width="{fmt.format(stroke_width)}" '
      'stroke-linecap="round" stroke-linejoin="round">'
    ),
  ]
  for i, strokes in enumerate(placed):
    out.append(f'<g id="line-{i}">')
    for s in strokes:
      rest = s[1:] if len(s) > 1 else s  # a single point: a zero-length segment, drawn as a round dot
      out.append(f'<path d="M{pt(s[0])} L' + " ".join(pt(p) for p in rest) + '"/>')
    out.append("</g>")
  out += ["</g>", "</svg>", ""]
  svg = "\n".join(out)
  if path is not None:
    with open(path, "w", encoding="utf-8") as f:
      f.write(svg)
  return svg


def _new_figure(width_in: float, height_in: float, **kwargs) -> Figure:
  """A pyplot-free figure with its own Agg canvas (no global matplotlib state is touched)."""
  fig = Figure(figsize=(width_in, height_in), **kwargs)
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Figure, path: PathLike, dpi: int) -> None:
  """Write the figure (format from the file extension) on a white background."""
  fig.savefig(path, dpi=dpi, facecolor="white")


def _draw_strokes(
  ax, strokes: Sequence[np.ndarray], color: str = _INK, linewidth: float = 1.2, color_strokes: bool = False, **kwargs
) -> None:
  """Draw strokes as one LineCollection (plus markers for single-point strokes)."""
  if color_strokes:
    palette = [colors.to_rgba(f"C{k % 10}") for k in range(len(strokes))]
  else:
    palette = [colors.to_rgba(color)] * len(strokes)
  segs = [s for s in strokes if len(s) > 1]
  seg_colors = [c for s, c in zip(strokes, palette) if len(s) > 1]
  ax.add_collection(
    LineCollection(segs, colors=seg_colors, linewidths=linewidth, capstyle="round", joinstyle="round", **kwargs)
  )
  dots = [(s[0], c) for s, c in zip(strokes, palette) if len(s) == 1]
  if dots:
    ax.scatter(
      [d[0][0] for d in dots],
      [d[0][1] for d in dots],
      s=(1.6 * linewidth) ** 2,
      c=[d[1] for d in dots],
      linewidths=0,
      **kwargs,
    )


def _label(ch: str) -> str:
  """Tick label of a character: visible symbols for space and control characters."""
  return {" ": "␣", "\t": "⇥", "\n": "↵"}.get(ch, ch)


# ----------------------------------------------------------------------------------------------------------
# PNG sheet of lines.


def save_lines_png(
  lines: Sequence[np.ndarray],
  texts: Sequence[str] | None,
  path: PathLike,
  width_in: float = 10.0,
  dpi: int = 120,
  linewidth: float = 1.2,
  color_strokes: bool = False,
  max_row_in: float = 2.5,
  labels: Sequence[object] | None = None,
) -> None:
  """A sheet with one row per line, its text as a small caption above it, all at one scale, equal aspect.

  Lines share the horizontal scale (the widest line fills `width_in`), each row is as tall as its line at
  that scale (capped at `max_row_in` inches). Captions read "label: text", the label being the row number
  unless `labels` are given (e.g. data set indices). `color_strokes` gives every stroke its own colour, which
  shows where the pen was lifted (eos). `texts` may be None (no captions). Format from `path`'s extension.
  """
  strokes_per_line = _check_lines(lines)
  if texts is not None and len(texts) != len(lines):
    raise ValueError(f"texts: got {len(texts)} texts for {len(lines)} lines")
  if labels is None:
    labels = range(len(lines))
  elif len(labels) != len(lines):
    raise ValueError(f"labels: got {len(labels)} labels for {len(lines)} lines")
  boxes = [_bounds(s) for s in strokes_per_line]
  pad = 0.08 * float(np.median([b[3] - b[2] for b in boxes]))
  span_x = max(b[1] - b[0] for b in boxes) + 2 * pad
  side_in = 0.15
  scale = (width_in - 2 * side_in) / max(span_x, 1e-9)  # inches per stroke unit
  row_in = [min(max((b[3] - b[2] + 2 * pad) * scale, 0.15), max_row_in) for b in boxes]
  cap_in = _CAPTION_IN if texts is not None else 0.05
  height_in = sum(row_in) + len(lines) * cap_in + 0.1
  fig = _new_figure(width_in, height_in)
  top = height_in - 0.05
  for i, (strokes, b, h) in enumerate(zip(strokes_per_line, boxes, row_in)):
    top -= cap_in
    if texts is not None:
      fig.text(
        side_in / width_in,
        (top + 0.06) / height_in,
        f"{labels[i]}: {texts[i]}",
        fontsize=9,
        color="#555555",
        ha="left",
        va="bottom",
      )
    ax = fig.add_axes((side_in / width_in, (top - h) / height_in, (width_in - 2 * side_in) / width_in, h / height_in))
    ax.set_axis_off()
    _draw_strokes(ax, strokes, linewidth=linewidth, color_strokes=color_strokes)
    cy = 0.5 * (b[2] + b[3])
    half_h = 0.5 * h / scale
    ax.set_xlim(b[0] - pad, b[0] - pad + span_x)
    ax.set_ylim(cy - half_h, cy + half_h)
    ax.set_aspect("equal", adjustable="datalim" if h >= max_row_in else "box", anchor="W")
    top -= h
  _save(fig, path, dpi)


# ----------------------------------------------------------------------------------------------------------
# Attention (Fig. 13).


def plot_attention(
  phi_TxU: np.ndarray,
  text: str,
  path: PathLike,
  line_Tx3: np.ndarray | None = None,
  dpi: int = 120,
  title: str | None = None,
) -> None:
  """Heat map of the window weights φ(t, u) (paper Fig. 13): time t on x, characters u on y (first at top).

  `phi_TxU` must have one column per character of `text` (slice off padding first). When `line_Tx3` is
  given, the written line is drawn in a panel above the map.
  """
  phi = np.asarray(phi_TxU, dtype=np.float64)
  if phi.ndim != 2:
    raise ValueError(f"phi_TxU: expected a [T, U] array, got shape {phi.shape}")
  if phi.shape[1] != len(text):
    raise ValueError(
      f"phi_TxU: has U = {phi.shape[1]} columns but text has {len(text)} characters "
      f"({text!r}); slice off padded columns first"
    )
  if phi.shape[0] == 0 or phi.shape[1] == 0:
    raise ValueError(f"phi_TxU: empty array of shape {phi.shape}")
  if not np.all(np.isfinite(phi)):
    raise ValueError("phi_TxU: contains NaN or infinite values")
  strokes = strokes_lib.offsets_to_strokes(line_Tx3) if line_Tx3 is not None else None
  t, u = phi.shape
  map_h = min(max(0.16 * u + 0.9, 2.2), 12.0)
  width_in = min(max(6.0, 0.012 * t + 4.0), 16.0)
  line_h = 0.0
  if strokes is not None:
    b = _bounds(strokes)
    line_h = min(max((b[3] - b[2]) / max(b[1] - b[0], 1e-9) * (width_in - 1.2), 0.6), 2.5) + 0.3
  fig = _new_figure(width_in, map_h + line_h + (0.3 if title else 0.0), layout="constrained")
  if strokes is not None:
    ax_line, ax = fig.subplots(2, 1, height_ratios=[line_h, map_h])
    ax_line.set_axis_off()
    _draw_strokes(ax_line, strokes)
    ax_line.autoscale()
    ax_line.set_aspect("equal")
  else:
    ax = fig.subplots()
  im = ax.imshow(
    phi.T,
    aspect="auto",
    origin="upper",
    cmap="Greys",
    interpolation="nearest",
    extent=(-0.5, t - 0.5, u - 0.5, -0.5),
    vmin=0.0,
    vmax=max(float(phi.max()), 1e-9),
  )
  fontsize = 9 if u <= 40 else max(4, int(9 * 40 / u))
  ax.set_yticks(np.arange(u), [_label(c) for c in text], fontsize=fontsize, family="monospace")
  ax.set_xlabel("time step t")
  ax.set_ylabel("character u")
  ax.tick_params(axis="y", length=0)
  fig.colorbar(im, ax=ax, label="φ(t, u)", fraction=0.03, pad=0.01)
  if title:
    fig.suptitle(title, fontsize=10)
  _save(fig, path, dpi)


# ----------------------------------------------------------------------------------------------------------
# Mixture density (Fig. 10).

MIXTURE_KEYS = ("pi", "mu", "sigma", "rho")


def check_mixture(mixture: Mapping[str, np.ndarray], num_steps: int | None = None) -> dict[str, np.ndarray]:
  """Validate a mixture dict (see `plot_density`) and return it as float64 arrays; ValueError naming the key."""
  if not isinstance(mixture, Mapping):
    raise ValueError(f"mixture: expected a dict with keys {MIXTURE_KEYS}, got {type(mixture).__name__}")
  missing = [k for k in MIXTURE_KEYS if k not in mixture]
  if missing:
    raise ValueError(f"mixture: missing keys {missing}; expected {MIXTURE_KEYS}")
  m = {k: np.asarray(mixture[k], dtype=np.float64) for k in MIXTURE_KEYS}
  if m["pi"].ndim != 2:
    raise ValueError(f"mixture['pi']: expected [T, M], got shape {m['pi'].shape}")
  t, nm = m["pi"].shape
  want = {"pi": (t, nm), "mu": (t, nm, 2), "sigma": (t, nm, 2), "rho": (t, nm)}
  for k, shape in want.items():
    if m[k].shape != shape:
      raise ValueError(
        f"mixture[{k!r}]: expected shape {shape} ([T, M{', 2' if len(shape) == 3 else ''}]), got {m[k].shape}"
      )
    if not np.all(np.isfinite(m[k])):
      raise ValueError(f"mixture[{k!r}]: contains NaN or infinite values")
  if num_steps is not None and t != num_steps:
    raise ValueError(f"mixture: has T = {t} steps but the line has {num_steps}")
  if np.any(m["sigma"] < 0):
    raise ValueError("mixture['sigma']: standard deviations must be > 0")
  if np.any(np.abs(m["rho"]) > 1):
    raise ValueError("mixture['rho']: correlations must lie in (-1, 1)")
  if np.any(m["pi"] < 0):
    raise ValueError("mixture['pi']: weights must be >= 0")
  # tanh / exp in float32 can round to exactly ±1 / 0 for confident predictions: keep those drawable.
  m["rho"] = np.clip(m["rho"], -1 + 1e-6, 1 - 1e-6)
  m["sigma"] = np.maximum(m["sigma"], 1e-12)
  return m


def denormalise_mixture(
  mixture: Mapping[str, np.ndarray], scale_2: Sequence[float], shift_2: Sequence[float] = (0.0, 0.0)
) -> dict[str, np.ndarray]:
  """Mixture over normalised offsets -> over raw offsets, for `raw = normalised * scale + shift` per axis.

  μ' = μ ⊙ scale + shift, σ' = σ ⊙ |scale|, π unchanged, ρ unchanged (it flips sign if exactly one scale is
  negative). For a `NormStats` (normalised = (raw - mean) / std): `denormalise_mixture(m, stats.std, stats.mean)`.
  """
  m = check_mixture(mixture)
  scale, shift = np.asarray(scale_2, np.float64).reshape(2), np.asarray(shift_2, np.float64).reshape(2)
  return {
    "pi": m["pi"],
    "mu": m["mu"] * scale + shift,
    "sigma": m["sigma"] * np.abs(scale),
    "rho": m["rho"] * np.sign(scale[0] * scale[1]),
  }


def mixture_density_grid(
  centres_Tx2: np.ndarray,
  mixture: Mapping[str, np.ndarray],
  xs_X: np.ndarray,
  ys_Y: np.ndarray,
  min_sigma: float = 0.0,
  reach: float = 4.0,
) -> np.ndarray:
  """Σ_t Σ_j π_tj N(p | c_t + μ_tj, σ_tj, ρ_tj) on the grid (ys_Y × xs_X) -> [Y, X] (paper Fig. 10).

  Each step is evaluated only within `reach` standard deviations of its components; σ is floored at
  `min_sigma` (e.g. half a grid cell) so predictions sharper than a cell stay visible.
  """
  m = check_mixture(mixture, len(centres_Tx2))
  xs, ys = np.asarray(xs_X, np.float64), np.asarray(ys_Y, np.float64)
  grid = np.zeros((len(ys), len(xs)))
  sig_TxMx2 = np.maximum(m["sigma"], min_sigma)
  means_TxMx2 = centres_Tx2[:, None, :] + m["mu"]
  for t in range(len(centres_Tx2)):
    keep = m["pi"][t] > 1e-6 * m["pi"][t].max()
    pi, mu, sig, rho = m["pi"][t][keep], means_TxMx2[t][keep], sig_TxMx2[t][keep], m["rho"][t][keep]
    lo, hi = mu - reach * sig, mu + reach * sig
    i0, i1 = np.searchsorted(xs, lo[:, 0].min()), np.searchsorted(xs, hi[:, 0].max())
    j0, j1 = np.searchsorted(ys, lo[:, 1].min()), np.searchsorted(ys, hi[:, 1].max())
    if i1 <= i0 or j1 <= j0:
      continue
    zx = (xs[None, None, i0:i1] - mu[:, 0, None, None]) / sig[:, 0, None, None]  # [M, 1, X]
    zy = (ys[None, j0:j1, None] - mu[:, 1, None, None]) / sig[:, 1, None, None]  # [M, Y, 1]
    r = rho[:, None, None]
    q = (zx**2 + zy**2 - 2 * r * zx * zy) / (1 - r**2)
    norm = pi / (2 * np.pi * sig[:, 0] * sig[:, 1] * np.sqrt(1 - rho**2))
    grid[j0:j1, i0:i1] += np.einsum("m,myx->yx", norm, np.exp(-0.5 * q))
  return grid


class _LineDensity(NamedTuple):
  """The summed next-point density of a line on a grid of square cells, with what drawing it needs."""

  strokes: list[np.ndarray]  # the line's pen-down strokes, float64 [n, 2]
  density_YxX: np.ndarray  # summed density at the cell centres
  xs_X: np.ndarray  # cell centres along x
  ys_Y: np.ndarray  # cell centres along y
  cell: float  # cell side, stroke units
  box: tuple[float, float, float, float]  # (xmin, xmax, ymin, ymax): the line and its origin plus a margin


def _line_density(line_Tx3: np.ndarray, m: Mapping[str, np.ndarray], grid_width: int) -> _LineDensity:
  """The density of every step's prediction summed on a grid `grid_width` cells wide over the line (and its origin)."""
  strokes = strokes_lib.offsets_to_strokes(line_Tx3)
  points_Tx2 = np.cumsum(line_Tx3[:, :2], axis=0)
  centres_Tx2 = np.concatenate([np.zeros((1, 2)), points_Tx2[:-1]], axis=0)  # step t predicts from point t - 1
  xmin, xmax, ymin, ymax = _bounds(strokes + [np.zeros((1, 2))])
  margin = 0.1 * max(ymax - ymin, 0.05 * (xmax - xmin), 1e-6)
  xmin, xmax, ymin, ymax = xmin - margin, xmax + margin, ymin - margin, ymax + margin
  cell = (xmax - xmin) / grid_width
  xs_X = xmin + cell * (np.arange(grid_width) + 0.5)
  ys_Y = ymin + cell * (np.arange(max(math.ceil((ymax - ymin) / cell), 2)) + 0.5)
  density_YxX = mixture_density_grid(centres_Tx2, m, xs_X, ys_Y, min_sigma=0.7 * cell)
  return _LineDensity(strokes, density_YxX, xs_X, ys_Y, cell, (xmin, xmax, ymin, ymax))


def _draw_density_panel(fig: Figure, ax, d: _LineDensity, decades: float) -> None:
  """The density on a log colour scale (`decades` powers of ten below its maximum) with the line drawn over it."""
  vmax = float(d.density_YxX.max())
  if vmax > 0:
    norm = colors.LogNorm(vmin=vmax * 10.0 ** (-decades), vmax=vmax, clip=True)
    half = d.cell / 2
    im = ax.imshow(
      np.maximum(d.density_YxX, vmax * 10.0 ** (-decades)),
      origin="lower",
      cmap="magma",
      norm=norm,
      extent=(d.xs_X[0] - half, d.xs_X[-1] + half, d.ys_Y[0] - half, d.ys_Y[-1] + half),
      interpolation="bilinear",
    )
    fig.colorbar(im, ax=ax, label="summed density", fraction=0.025, pad=0.01)
  _draw_strokes(ax, d.strokes, color="white", linewidth=0.7, alpha=0.9)
  xmin, xmax, ymin, ymax = d.box
  ax.set_xlim(xmin, xmax)
  ax.set_ylim(ymin, ymax)
  ax.set_aspect("equal")
  ax.set_xticks([])
  ax.set_yticks([])
  ax.set_title("predicted next-point densities (summed over time, log scale)", fontsize=9)


def _draw_weights_panel(fig: Figure, ax, pi_TxM: np.ndarray) -> None:
  """The mixture weights π as a grey map: time on x, component on y."""
  t_steps, nm = pi_TxM.shape
  im = ax.imshow(
    pi_TxM.T,
    aspect="auto",
    origin="lower",
    cmap="Greys",
    interpolation="nearest",
    extent=(-0.5, t_steps - 0.5, 0.5, nm + 0.5),
    vmin=0.0,
    vmax=1.0,
  )
  ax.set_ylabel("component")
  ax.set_title("mixture weights π", fontsize=9)
  ax.set_xticklabels([])
  fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01)


def _draw_eos_panel(ax, line_Tx3: np.ndarray, eos_prob_T: np.ndarray) -> None:
  """The predicted end-of-stroke probability over time, against the line's actual pen lifts."""
  t_steps = len(line_Tx3)
  ends = np.flatnonzero(line_Tx3[:, 2] > 0.5)
  ax.vlines(ends, 0.0, 1.0, color="C3", alpha=0.35, linewidth=1.0)
  ax.plot(np.arange(t_steps), eos_prob_T, color="C0", linewidth=1.0)
  ax.set_xlim(-0.5, t_steps - 0.5)
  ax.set_ylim(-0.03, 1.05)
  ax.set_xlabel("time step t")
  ax.set_ylabel("probability")
  ax.set_title("end-of-stroke probability (blue) and the line's actual pen lifts (red)", fontsize=9)


def plot_density(
  line_Tx3: np.ndarray,
  mixture: Mapping[str, np.ndarray],
  eos_prob_T: np.ndarray,
  path: PathLike,
  grid_width: int = 600,
  decades: float = 5.0,
  dpi: int = 120,
  title: str | None = None,
) -> None:
  """Paper Fig. 10: the written line over the summed predicted next-point densities (log colour scale),
  the mixture weights π over time, and the end-of-stroke probability over time.

  `mixture` is a dict of numpy arrays, row t being the network's prediction for row t of `line_Tx3` (the
  output at step t, whose input was row t - 1), in de-normalised offset units, i.e. offsets relative to
  absolute point t - 1 (the line's origin for t = 0):
    `pi` [T, M] component weights (rows sum to 1), `mu` [T, M, 2] means (dx, dy), `sigma` [T, M, 2]
    standard deviations (> 0), `rho` [T, M] correlations in (-1, 1).
  `eos_prob_T[t]` is the predicted probability that row t ends a stroke. Use `denormalise_mixture` to map
  a mixture over normalised offsets to raw units. The density is shown over `decades` powers of ten below
  its maximum, on a grid `grid_width` cells wide.
  """
  line_Tx3 = strokes_lib.check_line(line_Tx3)
  t_steps = line_Tx3.shape[0]
  m = check_mixture(mixture, t_steps)
  eos_T = np.asarray(eos_prob_T, np.float64)
  if eos_T.shape != (t_steps,):
    raise ValueError(f"eos_prob_T: expected shape ({t_steps},), got {eos_T.shape}")
  d = _line_density(line_Tx3, m, grid_width)

  width_in = 10.0
  xmin, xmax, ymin, ymax = d.box
  top_h = min(max((ymax - ymin) / (xmax - xmin) * (width_in - 1.5), 1.2), 6.0)
  pi_h, eos_h = min(max(0.05 * m["pi"].shape[1] + 0.6, 1.1), 1.8), 1.3
  fig = _new_figure(width_in, top_h + pi_h + eos_h + 0.8 + (0.3 if title else 0.0), layout="constrained")
  ax_d, ax_pi, ax_e = fig.subplots(3, 1, height_ratios=[top_h, pi_h, eos_h])
  _draw_density_panel(fig, ax_d, d, decades)
  _draw_weights_panel(fig, ax_pi, m["pi"])
  _draw_eos_panel(ax_e, line_Tx3, eos_T)
  ax_pi.set_xlim(ax_e.get_xlim())
  if title:
    fig.suptitle(title, fontsize=10)
  _save(fig, path, dpi)


# ----------------------------------------------------------------------------------------------------------
# Animation.


def save_animation(
  line_Tx3: np.ndarray, path: PathLike, fps: int = 25, max_frames: int = 150, dpi: int = 90, text: str | None = None
) -> None:
  """The pen writing the line, as a GIF (pillow) or a self-contained HTML page (by `path`'s extension)."""
  a = strokes_lib.check_line(line_Tx3)
  ext = os.path.splitext(str(path))[1].lower()
  if ext not in (".gif", ".html"):
    raise ValueError(f"path: {path!s} must end with .gif or .html")
  strokes = strokes_lib.offsets_to_strokes(a)
  points_Tx2 = np.cumsum(a[:, :2], axis=0)
  stroke_id = np.repeat(np.arange(len(strokes)), [len(s) for s in strokes])
  xmin, xmax, ymin, ymax = _bounds(strokes)
  pad = 0.1 * max(ymax - ymin, 1e-6)
  width_in = 8.0
  height_in = min(max((ymax - ymin + 2 * pad) / max(xmax - xmin + 2 * pad, 1e-9) * width_in, 1.0), 6.0)
  fig = _new_figure(width_in, height_in + (0.3 if text else 0.0))
  ax = fig.add_axes((0, 0, 1, height_in / (height_in + (0.3 if text else 0.0))))
  ax.set_axis_off()
  ax.set_xlim(xmin - pad, xmax + pad)
  ax.set_ylim(ymin - pad, ymax + pad)
  ax.set_aspect("equal")
  if text:
    fig.text(0.01, 0.99, text, fontsize=9, color="#555555", ha="left", va="top")
  ink = LineCollection([], colors=_INK, linewidths=1.4, capstyle="round", joinstyle="round")
  ax.add_collection(ink)
  (pen,) = ax.plot([], [], "o", color="C3", markersize=4)
  t_steps = len(points_Tx2)
  ends = np.unique(np.linspace(1, t_steps, min(max_frames, t_steps)).round().astype(int))
  hold = max(fps // 2, 1)  # linger on the finished line

  def frame(k: int):
    n = ends[min(k, len(ends) - 1)]
    segs = [points_Tx2[:n][stroke_id[:n] == s] for s in range(stroke_id[n - 1] + 1)]
    ink.set_segments([s if len(s) > 1 else np.repeat(s, 2, axis=0) for s in segs])
    pen.set_data([points_Tx2[n - 1, 0]], [points_Tx2[n - 1, 1]])
    return ink, pen

  anim = animation.FuncAnimation(fig, frame, frames=len(ends) + hold, blit=False)
  if ext == ".gif":
    anim.save(path, writer=animation.PillowWriter(fps=fps), dpi=dpi)
  else:
    fig.set_dpi(dpi)
    html = anim.to_jshtml(fps=fps, default_mode="once")
    with open(path, "w", encoding="utf-8") as f:
      f.write("<!DOCTYPE html>\n<html><head><meta charset='utf-8'></head><body>\n" + html + "\n</body></html>\n")
