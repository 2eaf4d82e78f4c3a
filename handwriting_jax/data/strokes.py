"""Pen strokes in the fixed `[T, 3]` offset format, and the per-line preprocessing steps (pure numpy).

Format. A line is a float32 array `offsets_Tx3` of `(dx, dy, eos)`: row t is the offset of point t from
point t-1, y points UP, and `eos = 1` on the last point of every stroke (so the last row always has eos 1).
Absolute pen positions are `points_Tx3` of `(x, y, eos)` with the same eos column. `offsets_to_strokes` is the
one way from offsets to pen-down strokes (drawing and preprocessing both use it): the float64 running sum of the
offsets, never rounded to float32 on the way, after `check_line` has refused a malformed line.

Origin rule. Row 0 is the offset of the first point from the line's origin, and the origin is the first
pen position unless given: `points_to_offsets(p)` therefore starts with `(0, 0, eos_0)`, and
`offsets_to_points(offsets, origin=p[0, :2])` gives `p` back exactly (integer coordinates such as
IAM-OnDB's, or any float32 coordinates whose running sums are exact). Passing the same `origin` to both
functions makes the round trip exact for any origin; with the default origin `(0, 0)` it is exact for
lines that start at the origin, which every line of this package does.

Preprocessing (`preprocess_line`, each step a `config.data` field, see `Preprocessing`), in this order:
  1. drop repeated points (a point equal to the previous point of the same stroke; its eos moves back);
  2. absurd jumps: a pen-down step longer than `jump_threshold` (raw input units: IAM-OnDB writes about
     150 units per character, the embedded corpus has an x-height of about 30) either lifts the pen before
     it ("split") or drops the whole line ("drop");
  3. optional Savitzky-Golay smoothing of each stroke (`scipy.signal.savgol_filter`);
  4. optional alignment: rotate the line so its least-squares baseline is horizontal, then shear it so
     that its mean slant of near-vertical pen-down segments is upright;
  5. optional downsampling (`downsample` = k > 1): keep every k-th point of each stroke and always its last
     point, so pen lifts stay exact and the line has about 1/k of its steps (cheaper steps, fewer steps per
     character for the window to cover). `max_points` counts the points before this step.
Normalisation is separate (`NormStats`, fitted on the training split): offsets are divided by the
training-set standard deviation (and the mean subtracted if asked); the eos column is never touched.
"""

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import interpolate, signal

JUMP_MODES = ("split", "drop")
SMOOTHING_MODES = ("none", "savgol")
# Near-vertical segments (within this angle of vertical) estimate a line's slant.
_SLANT_MAX_ANGLE = np.pi / 4


def check_line(line_Tx3: np.ndarray, name: str = "line") -> np.ndarray:
  """`line_Tx3` as float64 [T, 3], or ValueError naming `name` (bad shape, empty, non-finite): bad input fails early."""
  a = np.asarray(line_Tx3)
  if a.ndim != 2 or a.shape[1] != 3:
    raise ValueError(f"{name}: expected a [T, 3] array of (dx, dy, eos) offsets, got shape {a.shape}")
  if a.shape[0] == 0:
    raise ValueError(f"{name}: empty line (T = 0)")
  a = a.astype(np.float64)
  if not np.all(np.isfinite(a)):
    raise ValueError(f"{name}: contains NaN or infinite values")
  return a


def points_to_offsets(points_Tx3: np.ndarray, origin: Sequence[float] | None = None) -> np.ndarray:
  """Absolute `(x, y, eos)` -> offsets `(dx, dy, eos)`; row 0 is measured from `origin` (default: point 0)."""
  points_Tx3 = np.asarray(points_Tx3)
  _check_shape(points_Tx3, "points_Tx3")
  xy_Tx2 = points_Tx3[:, :2].astype(np.float64)
  start = xy_Tx2[0] if origin is None else np.asarray(origin, np.float64)
  offsets_Tx3 = np.empty(points_Tx3.shape, np.float32)
  offsets_Tx3[:, :2] = np.diff(xy_Tx2, axis=0, prepend=start[None, :])
  offsets_Tx3[:, 2] = points_Tx3[:, 2]
  return offsets_Tx3


def offsets_to_points(offsets_Tx3: np.ndarray, origin: Sequence[float] = (0.0, 0.0)) -> np.ndarray:
  """Offsets `(dx, dy, eos)` -> absolute `(x, y, eos)` starting from `origin` (inverse of points_to_offsets)."""
  offsets_Tx3 = np.asarray(offsets_Tx3)
  _check_shape(offsets_Tx3, "offsets_Tx3")
  points_Tx3 = np.empty(offsets_Tx3.shape, np.float32)
  points_Tx3[:, :2] = np.cumsum(offsets_Tx3[:, :2].astype(np.float64), axis=0) + np.asarray(origin, np.float64)
  points_Tx3[:, 2] = offsets_Tx3[:, 2]
  return points_Tx3


def points_to_strokes(points_Tx3: np.ndarray) -> list[np.ndarray]:
  """Split absolute points into pen-down strokes `[n, 2]` (float64) at the eos marks."""
  ends = np.flatnonzero(points_Tx3[:, 2] > 0.5) + 1
  if ends.size == 0 or ends[-1] != len(points_Tx3):
    ends = np.append(ends, len(points_Tx3))  # an unterminated last stroke still ends with the line
  xy_Tx2 = np.asarray(points_Tx3[:, :2], np.float64)
  return [xy_Tx2[a:b] for a, b in zip(np.concatenate([[0], ends[:-1]]), ends)]


def strokes_to_points(strokes: Sequence[np.ndarray]) -> np.ndarray:
  """Pen-down strokes `[n, 2]` -> absolute points `[T, 3]` with eos on each stroke's last point."""
  strokes = [s for s in strokes if len(s)]
  if not strokes:
    raise ValueError("a line needs at least one point")
  points_Tx3 = np.zeros((sum(len(s) for s in strokes), 3), np.float64)
  points_Tx3[:, :2] = np.concatenate(strokes, axis=0)
  points_Tx3[np.cumsum([len(s) for s in strokes]) - 1, 2] = 1.0
  return points_Tx3


def strokes_to_offsets(strokes: Sequence[np.ndarray]) -> np.ndarray:
  """Pen-down strokes -> the fixed offset format, origin at the first point."""
  return points_to_offsets(strokes_to_points(strokes))


def offsets_to_strokes(offsets_Tx3: np.ndarray) -> list[np.ndarray]:
  """Offsets -> pen-down strokes of float64 absolute points `[n, 2]` (split after each eos), to draw or preprocess.

  Row 0 is measured from the origin (0, 0). Points after the last eos (an unfinished stroke, e.g. a sample cut at its
  length cap) form a final stroke. The sum is float64 throughout (no float32 round trip); a bad line raises
  `check_line`'s ValueError.
  """
  line_Tx3 = check_line(offsets_Tx3)
  points_Tx2 = np.cumsum(line_Tx3[:, :2], axis=0)
  ends = np.flatnonzero(line_Tx3[:, 2] > 0.5) + 1
  return [s for s in np.split(points_Tx2, ends) if len(s)]


def strokes_to_training_units(strokes_y_up: Sequence[np.ndarray], line_height: float, point_step: float) -> np.ndarray:
  """Pen strokes `[n, 2]` in any units (y up; a hand-drawn canvas line, an InkML or SVG file) -> raw offsets
  `[T, 3]` in a writer's training units, so a network primed with them sees a line like its training data: scaled
  so the ink is `line_height` tall, then resampled along each stroke every `point_step` (a stroke of one point, or
  of no length, stays one point). ValueError for no points or ink of no height (callers check first, in their
  own words)."""
  arrays = [np.asarray(s, np.float64).reshape(-1, 2) for s in strokes_y_up]
  arrays = [a for a in arrays if len(a)]
  if not arrays:
    raise ValueError("strokes_to_training_units needs at least one point")
  allpts_Nx2 = np.concatenate(arrays)
  height = float(np.ptp(allpts_Nx2[:, 1]))
  if not height > 0 or not line_height > 0 or not point_step > 0:
    raise ValueError(
      f"cannot scale ink of height {height} to a line height {line_height} at a point step "
      f"{point_step}: all three must be positive"
    )
  k = line_height / height
  out = []
  for a in arrays:
    a = (a - allpts_Nx2[0]) * k
    seg = np.linalg.norm(np.diff(a, axis=0), axis=1) if len(a) > 1 else np.zeros(0)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(round(float(arc[-1]) / point_step) + 1, 1)
    if n == 1 or arc[-1] == 0:
      out.append(a[:1])
      continue
    at = np.linspace(0.0, arc[-1], n)
    out.append(np.stack([np.interp(at, arc, a[:, 0]), np.interp(at, arc, a[:, 1])], axis=1))
  return strokes_to_offsets(out).astype(np.float32)


def _pen_down_steps(offsets_Tx3: np.ndarray) -> np.ndarray:
  """Bool [T]: row t moves the pen while it is down (t >= 1 and row t-1 did not end a stroke)."""
  down = np.zeros(len(offsets_Tx3), bool)
  down[1:] = offsets_Tx3[:-1, 2] < 0.5
  return down


def drop_repeated_points(offsets_Tx3: np.ndarray) -> tuple[np.ndarray, int]:
  """Remove each point equal to the previous point of its stroke; returns (offsets, points removed).

  A removed point that ended its stroke passes its eos to the previous (equal) point, so the pen path and
  the stroke ends stay the same.
  """
  repeated = _pen_down_steps(offsets_Tx3) & (offsets_Tx3[:, 0] == 0) & (offsets_Tx3[:, 1] == 0)
  if not repeated.any():
    return offsets_Tx3, 0
  keep = ~repeated
  idx = np.arange(len(offsets_Tx3))
  owner = np.maximum.accumulate(np.where(keep, idx, 0))  # the kept row each row collapses into
  eos = np.zeros(len(offsets_Tx3), offsets_Tx3.dtype)
  np.maximum.at(eos, owner, offsets_Tx3[:, 2])
  out = offsets_Tx3[keep].copy()
  out[:, 2] = eos[keep]
  return out, int(repeated.sum())


def _jumps(offsets_Tx3: np.ndarray, threshold: float) -> np.ndarray:
  """Bool [T]: row t is a pen-down step longer than `threshold`."""
  return _pen_down_steps(offsets_Tx3) & (np.hypot(offsets_Tx3[:, 0], offsets_Tx3[:, 1]) > threshold)


def split_jumps(offsets_Tx3: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
  """Lift the pen before every pen-down step longer than `threshold`; returns (offsets, jumps split)."""
  jumps = _jumps(offsets_Tx3, threshold)
  if not jumps.any():
    return offsets_Tx3, 0
  out = offsets_Tx3.copy()
  out[np.flatnonzero(jumps) - 1, 2] = 1.0  # the point before the jump ends its stroke
  return out, int(jumps.sum())


def count_jumps(offsets_Tx3: np.ndarray, threshold: float) -> int:
  """Number of pen-down steps longer than `threshold`."""
  return int(_jumps(offsets_Tx3, threshold).sum())


def smooth_strokes(strokes: Sequence[np.ndarray], window: int, order: int) -> list[np.ndarray]:
  """Savitzky-Golay smoothing of each stroke; short strokes use the longest odd window that fits."""
  out = []
  for s in strokes:
    w = min(window, len(s) if len(s) % 2 else len(s) - 1)
    if w <= order:  # too short to fit the polynomial: keep as is
      out.append(s)
      continue
    out.append(signal.savgol_filter(s, w, order, axis=0, mode="interp"))
  return out


def downsample_strokes(strokes: Sequence[np.ndarray], factor: int) -> list[np.ndarray]:
  """Keep points 0, k, 2k, ... of each stroke and its last point (every stroke keeps its ends)."""
  out = []
  for s in strokes:
    keep = np.arange(0, len(s), factor)
    if keep[-1] != len(s) - 1:
      keep = np.append(keep, len(s) - 1)
    out.append(s[keep])
  return out


def upsample_strokes(strokes: Sequence[np.ndarray], factor: int) -> list[np.ndarray]:
  """The inverse of `downsample_strokes` for display: a natural cubic spline through each stroke's points (taken as
  equally spaced in time, as the pen sampled them), evaluated `factor` times as densely; every original point is
  kept, and strokes of two points stay straight."""
  if factor < 1:
    raise ValueError(f"factor must be >= 1, got {factor}")
  out = []
  for s in strokes:
    s = np.asarray(s, np.float64)
    if factor == 1 or len(s) < 2:
      out.append(s)
      continue
    t_fine = np.arange((len(s) - 1) * factor + 1) / factor
    out.append(interpolate.CubicSpline(np.arange(len(s)), s, axis=0, bc_type="natural")(t_fine))
  return out


def upsample_line(offsets_Tx3: np.ndarray, factor: int) -> np.ndarray:
  """A line of offsets with every stroke spline-upsampled `factor` times (`upsample_strokes`); the first point and
  the pen lifts stay where they were."""
  points_Tx3 = offsets_to_points(offsets_Tx3)
  if factor == 1 or not len(points_Tx3):
    return np.asarray(offsets_Tx3, np.float32)
  fine = strokes_to_points(upsample_strokes(points_to_strokes(points_Tx3), factor))
  fine[-1, 2] = points_Tx3[-1, 2]  # a line cut off mid-stroke stays unfinished
  return points_to_offsets(fine, origin=(0.0, 0.0))


def align_strokes(strokes: Sequence[np.ndarray]) -> list[np.ndarray]:
  """Rotate the line's least-squares baseline to horizontal, then shear its mean slant upright."""
  xy_Nx2 = np.concatenate(strokes, axis=0)
  x, y = xy_Nx2[:, 0], xy_Nx2[:, 1]
  if len(xy_Nx2) >= 2 and np.ptp(x) > 0:
    slope = np.polyfit(x, y, 1)[0]
    theta = -np.arctan(slope)
    rot_2x2 = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    strokes = [s @ rot_2x2 for s in strokes]  # row vectors: (x, y) @ R^T rotates by theta
  seg = np.concatenate([np.diff(s, axis=0) for s in strokes if len(s) > 1] or [np.zeros((0, 2))], axis=0)
  seg = seg * np.where(seg[:, 1:2] < 0, -1.0, 1.0)  # orient every segment upwards
  angle = np.arctan2(seg[:, 0], seg[:, 1])  # 0 = vertical, > 0 = leaning right
  length = np.hypot(seg[:, 0], seg[:, 1])
  near = (np.abs(angle) < _SLANT_MAX_ANGLE) & (length > 0)
  if near.any():
    slant = float(np.average(angle[near], weights=length[near]))
    shear = np.tan(slant)
    strokes = [np.stack([s[:, 0] - shear * s[:, 1], s[:, 1]], axis=1) for s in strokes]
  return list(strokes)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """The preprocessing settings of `config.data` (validated by validation); part of the IAM cache key."""

  jump_threshold: float = 1000.0
  jump_mode: str = "split"
  smoothing: str = "none"
  savgol_window: int = 7
  savgol_order: int = 3
  align: bool = False
  max_points: int = 1200
  max_chars: int = 80
  downsample: int = 1

  def __post_init__(self):
    """The modes this module knows (any other would silently act as the default one)."""
    if self.jump_mode not in JUMP_MODES or self.smoothing not in SMOOTHING_MODES:
      raise ValueError(
        f"jump_mode must be one of {JUMP_MODES} and smoothing one of {SMOOTHING_MODES}, got "
        f"{self.jump_mode!r} and {self.smoothing!r}"
      )

  @classmethod
  def from_config(cls, data_cfg: Any) -> "Preprocessing":
    """The settings of a validated `config.data`, as the field types (for stable cache keys: 1000 -> 1000.0)."""
    return cls(**{f.name: f.type(data_cfg[f.name]) for f in dataclasses.fields(cls)})

  def as_dict(self) -> dict[str, Any]:
    """Plain dict of the settings (for cache keys and logs)."""
    return dataclasses.asdict(self)


def preprocess_line(offsets_Tx3: np.ndarray, settings: Preprocessing) -> tuple[np.ndarray | None, collections.Counter]:
  """Steps 1-4 of the module docstring on one line; returns (offsets or None if dropped, counts).

  Counts: `repeated_points` removed, `split_jumps`, and `dropped_jump_lines` / `dropped_long_lines` (1 when
  the line is dropped for an absurd jump in "drop" mode / for more than `max_points` points).
  """
  counts = collections.Counter()
  line_Tx3 = np.asarray(offsets_Tx3, np.float32)
  _check_shape(line_Tx3, "offsets_Tx3")
  if line_Tx3[-1, 2] < 0.5:  # the last point always ends a stroke
    line_Tx3 = line_Tx3.copy()
    line_Tx3[-1, 2] = 1.0
  line_Tx3, counts["repeated_points"] = drop_repeated_points(line_Tx3)
  if settings.jump_mode == "drop":
    if count_jumps(line_Tx3, settings.jump_threshold):
      counts["dropped_jump_lines"] = 1
      return None, counts
  else:
    line_Tx3, counts["split_jumps"] = split_jumps(line_Tx3, settings.jump_threshold)
  if len(line_Tx3) > settings.max_points:
    counts["dropped_long_lines"] = 1
    return None, counts
  if settings.smoothing == "savgol" or settings.align or settings.downsample > 1:
    strokes = offsets_to_strokes(line_Tx3)
    if settings.smoothing == "savgol":
      strokes = smooth_strokes(strokes, settings.savgol_window, settings.savgol_order)
    if settings.align:
      strokes = align_strokes(strokes)
    if settings.downsample > 1:
      strokes = downsample_strokes(strokes, settings.downsample)
    line_Tx3 = strokes_to_offsets(strokes)
  return line_Tx3, counts


@dataclasses.dataclass(frozen=True, eq=False)
class NormStats:
  """Offset statistics of the training split: `normalise` maps (dx, dy) to `(d - mean) / std`."""

  mean: np.ndarray  # [2] float32; zeros unless config.data.normalise_mean
  std: np.ndarray  # [2] float32, positive

  @classmethod
  def fit(cls, lines: Iterable[np.ndarray], normalise_mean: bool = False) -> "NormStats":
    """Fit on every row of `lines` (raw offsets): std always, mean only if `normalise_mean`."""
    rows = [np.asarray(line)[:, :2] for line in lines]
    if not rows:
      raise ValueError("cannot fit normalisation statistics on zero lines")
    xy_Nx2 = np.concatenate(rows, axis=0).astype(np.float64)
    mean = xy_Nx2.mean(axis=0) if normalise_mean else np.zeros(2)
    std = np.sqrt(np.mean((xy_Nx2 - mean) ** 2, axis=0))
    std = np.where(std > 0, std, 1.0)
    return cls(mean=mean.astype(np.float32), std=std.astype(np.float32))

  def normalise(self, line_Tx3: np.ndarray) -> np.ndarray:
    """Raw offsets -> normalised offsets (eos untouched)."""
    out = np.array(line_Tx3, dtype=np.float32, copy=True)
    out[..., :2] = (out[..., :2] - self.mean) / self.std
    return out

  def denormalise(self, line_Tx3: np.ndarray) -> np.ndarray:
    """Normalised offsets -> raw offsets (eos untouched); inverse of `normalise`."""
    out = np.array(line_Tx3, dtype=np.float32, copy=True)
    out[..., :2] = out[..., :2] * self.std + self.mean
    return out

  def to_arrays(self) -> dict[str, np.ndarray]:
    """`{"mean": [2], "std": [2]}` float32, to store with a checkpoint."""
    return {"mean": np.asarray(self.mean, np.float32), "std": np.asarray(self.std, np.float32)}

  @classmethod
  def from_arrays(cls, d: Mapping[str, Any]) -> "NormStats":
    """Inverse of `to_arrays` (accepts lists, e.g. read back from JSON)."""
    mean = np.asarray(d["mean"], np.float32).reshape(2)
    std = np.asarray(d["std"], np.float32).reshape(2)
    if not np.all(std > 0):
      raise ValueError(f"normalisation std must be positive, got {std}")
    return cls(mean=mean, std=std)


def _check_shape(line_Tx3: np.ndarray, name: str) -> None:
  """A line is a non-empty [T, 3] array (shape only, unlike `check_line`: the point conversions pass NaN through)."""
  if line_Tx3.ndim != 2 or line_Tx3.shape[1] != 3 or line_Tx3.shape[0] == 0:
    raise ValueError(f"{name} must have shape [T, 3] with T >= 1, got {line_Tx3.shape}")
