"""Embedded training corpus: lines of text written in the Hershey script fonts by synthetic writers.

The default data when no IAM-OnDB path is given (fonts by A. V. Hershey, via the MIT-licensed PyPI package
`hershey-fonts`; fonts `scripts` and `cursive`, which share their lower case; `cursive` has upright print
digits). Each line is built in four steps:

1. Layout: glyph strokes (cached per font, smoothed with Chaikin corner cutting that keeps sharp corners) are
   placed letter by letter with per-letter size, baseline and slant noise and writer-dependent spacing.
2. Joins: within a word, a stroke whose start is near the end of the current stroke (a writer-dependent
   distance) is connected with a pen-down cubic Hermite curve, so words become cursive multi-letter strokes;
   writers that "dot the i's later" may skip a few strokes (dots, crossbars) and draw them after the word.
3. Writer geometry: ascender / descender proportions, x/y scale, slant (shear), baseline tilt and drift, and
   smooth low-frequency jitter of x and y as a function of arc length.
4. Pen: each stroke is resampled in time with a speed following the two-thirds power law (slow in curves,
   fast on straight parts) times smooth random variation, so points are denser in turns; corners are kept
   as samples. The sampling interval is calibrated per writer so that the mean number of points per
   character is about the writer's `points_per_char` (default 14; long loops get more points than dots).

Output format (see interfaces): float32 `[T, 3]` rows `(dx, dy, eos)`, y up, eos = 1 on each stroke's last
point. Row 0 is the first pen position relative to the line's origin, the left end of the baseline, so the
first offset tells where the line starts (a capital starts high). Units: the x-height is about
`cfg.x_height` (30 by default). Everything is a pure function of `cfg.seed` (numpy `Generator`s seeded with
`[seed, stream, index]`, no global RNG), so a line does not depend on how many others are generated.
"""

import dataclasses
import functools
import itertools
import math
from typing import NamedTuple

import ml_collections
import numpy as np

from handwriting_jax.data import vocabulary
from handwriting_jax.errors import ConfigError

ALPHABET = vocabulary.ALPHABET
# `scriptc` is not offered: it draws thick down-strokes as doubled, split strokes that no pen would make.
FONTS = ("scripts", "cursive")
# Hershey's single-stroke print font (Simplex Roman), for the digit-rich lines of `data/synthetic.py`: plain print
# capitals, digits and punctuation. Its x-height is larger than the scripts' (14 font units against 9).
PRINT_FONT = "futural"

# Hershey script metrics (font units, y down): cap line -12, x-height top 0, baseline 9, descender 21.
_BASELINE = 9.0
_XH = 9.0  # x-height in font units
_CORNER_DEG = 65.0  # a turn sharper than this at a font vertex is a corner (kept exactly when resampling)
_TRAIN, _VALID, _WRITER = 1, 2, 3  # RNG stream ids


class _Stroke(NamedTuple):
  pts_Nx2: np.ndarray  # dense smoothed points, y up, baseline at 0
  corner_N: np.ndarray  # bool, True at sharp corners (kept exactly when resampling)
  t_in: tuple[float, float]  # unit direction at the start (pointing along the stroke)
  t_out: tuple[float, float]  # unit direction at the end (pointing out of the stroke)
  joinable: bool  # False for dots, digits and punctuation, which are never connected to other strokes
  is_dot: bool = False  # a single font point, drawn as a short tap
  mark: bool = False  # a stroke drawn back to the left of its glyph's previous one (t crossbar)


class _Glyph(NamedTuple):
  pts_Mx2: np.ndarray  # all strokes' points, concatenated
  bounds: tuple[int, ...]  # stroke k is pts_Mx2[bounds[k]:bounds[k + 1]]
  strokes: tuple[_Stroke, ...]  # the same strokes, at the glyph's origin
  width: float  # advance width


def _turn_angles(pts_Nx2: np.ndarray) -> np.ndarray:
  """Absolute turning angle (radians) at every vertex of a polyline; 0 at the two ends."""
  ang = np.zeros(len(pts_Nx2))
  if len(pts_Nx2) > 2:
    d1 = pts_Nx2[1:-1] - pts_Nx2[:-2]
    d2 = pts_Nx2[2:] - pts_Nx2[1:-1]
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    dot = (d1 * d2).sum(-1)
    ang[1:-1] = np.abs(np.arctan2(cross, dot))
  return ang


def _chaikin(pts_Nx2: np.ndarray, iterations: int = 2) -> np.ndarray:
  """Chaikin corner cutting of an open polyline, keeping its end points (smooths the integer font grid)."""
  for _ in range(iterations):
    if len(pts_Nx2) < 3:
      return pts_Nx2
    a, b = pts_Nx2[:-1], pts_Nx2[1:]
    mid = np.stack([0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b], 1).reshape(-1, 2)[1:-1]
    pts_Nx2 = np.concatenate([pts_Nx2[:1], mid, pts_Nx2[-1:]])
  return pts_Nx2


def _direction(pts_Nx2: np.ndarray, at_end: bool, reach: float = 1.5) -> tuple[float, float]:
  """Unit direction of a stroke at its start (pointing in) or end (pointing out), over `reach` units."""
  p = pts_Nx2[::-1] if at_end else pts_Nx2
  d = np.hypot(*(p - p[0]).T)
  j = int(np.argmax(d >= reach)) if np.any(d >= reach) else len(p) - 1
  v = p[0] - p[j] if at_end else p[j] - p[0]
  n = math.hypot(*v)
  return (float(v[0] / n), float(v[1] / n)) if n > 0 else (0.0, 0.0)


def _smooth_stroke(raw_Nx2: np.ndarray) -> np.ndarray:
  """Dense smooth version of a font polyline: split at sharp corners, Chaikin-smooth each piece."""
  keep = np.concatenate([[True], np.any(np.diff(raw_Nx2, axis=0) != 0, axis=1)])
  raw_Nx2 = raw_Nx2[keep]
  if len(raw_Nx2) == 1:
    return raw_Nx2
  corner = _turn_angles(raw_Nx2) > np.deg2rad(_CORNER_DEG)
  cuts = [0, *np.flatnonzero(corner), len(raw_Nx2) - 1]
  pieces = [_chaikin(raw_Nx2[a : b + 1]) for a, b in itertools.pairwise(cuts)]
  return np.concatenate([pieces[0]] + [q[1:] for q in pieces[1:]])


def _make_stroke(pts_Nx2: np.ndarray, dot_length: float = 0.0) -> _Stroke:
  """A _Stroke with corners and end directions; a single point becomes a short tap of `dot_length`."""
  if len(pts_Nx2) == 1:
    pts_Nx2 = np.concatenate([pts_Nx2, pts_Nx2 + [[0.5 * dot_length, 0.8 * dot_length]]])
    return _Stroke(pts_Nx2, np.ones(2, bool), (0.0, 0.0), (0.0, 0.0), False, True)
  corner = _turn_angles(pts_Nx2) > np.deg2rad(_CORNER_DEG)
  return _Stroke(pts_Nx2, corner, _direction(pts_Nx2, False), _direction(pts_Nx2, True), True)


@functools.cache
def _font(name: str) -> dict[str, _Glyph]:
  """Glyphs of one Hershey font for ALPHABET, smoothed, y up, baseline at y = 0 (cached per font)."""
  from HersheyFonts import HersheyFonts

  f = HersheyFonts()
  f.load_default_font(name)
  glyphs = f.all_glyphs
  out = {}
  for ch in ALPHABET:
    g = glyphs[ch]
    dense = []
    for s in g.strokes:
      r = np.array(s, np.float64)
      dense.append(_smooth_stroke(np.stack([r[:, 0] - g.left_offset, _BASELINE - r[:, 1]], 1)))
    strokes = tuple(_make_stroke(d, dot_length=1.0) for d in dense)
    if not ch.isalpha():  # digits and punctuation are written apart, never joined
      strokes = tuple(st._replace(joinable=False) for st in strokes)
    strokes = tuple(
      st._replace(mark=k > 0 and st.pts_Nx2[0, 0] < dense[k - 1][-1, 0] - 0.6 * _XH) for k, st in enumerate(strokes)
    )
    pts = np.concatenate([st.pts_Nx2 for st in strokes]) if strokes else np.zeros((0, 2))
    bounds = tuple(np.cumsum([0] + [len(st.pts_Nx2) for st in strokes]).tolist())
    out[ch] = _Glyph(pts, bounds, strokes, float(g.char_width))
  return out


@dataclasses.dataclass(frozen=True)
class Writer:
  """Style of one synthetic writer (lengths in font units: x-height 9, cap height 21)."""

  font: str
  slant: float  # shear angle (radians), positive = leaning right
  scale: float  # overall size
  aspect: float  # x scale relative to y
  ascender: float  # height of ascenders / capitals above the x-height, relative to the font
  descender: float  # depth of descenders, relative to the font
  letter_spacing: float  # multiplies glyph advance widths
  word_spacing: float  # multiplies the space width
  tilt: float  # baseline rotation (radians)
  drift_amp: float  # baseline drift amplitude
  drift_wavelength: float
  jitter_amp: float  # smooth jitter amplitude (x and y, function of arc length)
  jitter_wavelength: float
  letter_noise: float  # per-letter relative size / baseline / slant noise
  join_dist: float  # connect a stroke end to a next start closer than this (cursive joins)
  lookahead: int  # how many strokes ahead a join may look (>1: dots, crossbars drawn after the word)
  speed_exponent: float  # power law of pen speed: speed ~ (curvature + 1/size)^-exponent
  speed_noise: float  # relative smooth speed variation
  dot_length: float  # length of the short stroke drawn for a dot
  points_per_char: float  # pen sampling density target (mean points per character)
  time_step: float = 1.0  # pen time between samples, calibrated so that points_per_char holds on average


def make_writer(rng: np.random.Generator, fonts: tuple[str, ...], points_per_char: float) -> Writer:
  """Draw one writer's style parameters and calibrate its sampling rate to points_per_char."""
  cursive = rng.random() < 0.8  # most writers join (almost) everything within a word
  w = Writer(
    font=str(fonts[rng.integers(len(fonts))]),
    slant=float(np.deg2rad(np.clip(rng.normal(10.0, 9.0), -12.0, 32.0))),
    scale=float(rng.uniform(0.85, 1.2)),
    aspect=float(rng.uniform(0.8, 1.2)),
    ascender=float(rng.uniform(0.7, 1.15)),
    descender=float(rng.uniform(0.7, 1.1)),
    letter_spacing=float(rng.uniform(0.9, 1.2)),
    word_spacing=float(rng.uniform(0.8, 1.6)),
    tilt=float(np.deg2rad(rng.normal(0.0, 1.5))),
    drift_amp=float(rng.uniform(0.0, 0.15) * _XH),
    drift_wavelength=float(rng.uniform(8.0, 20.0) * _XH),
    jitter_amp=float(rng.uniform(0.015, 0.045) * _XH),
    jitter_wavelength=float(rng.uniform(2.0, 5.0) * _XH),
    letter_noise=float(rng.uniform(0.02, 0.07)),
    join_dist=float((rng.uniform(1.05, 1.35) if cursive else rng.uniform(0.2, 0.7)) * _XH),
    lookahead=int(rng.integers(1, 5)),
    speed_exponent=float(rng.uniform(0.15, 0.3)),
    speed_noise=float(rng.uniform(0.05, 0.15)),
    dot_length=float(rng.uniform(0.1, 0.25) * _XH),
    points_per_char=float(points_per_char * np.exp(rng.normal(0.0, 0.15))),
  )
  # Calibrate the sampling interval on a representative text, so that the density follows pen time (long
  # loops get more points) and the mean points per character is the writer's points_per_char.
  n_chars = len(_CALIBRATION_TEXT)
  _, times, _ = _pen_path(_layout(_CALIBRATION_TEXT, w, rng), w, rng)
  w = dataclasses.replace(w, time_step=float(times.sum() / n_chars / w.points_per_char))
  got = len(write_line(_CALIBRATION_TEXT, w, rng, _XH, jitter_time=False)) / n_chars
  return dataclasses.replace(w, time_step=w.time_step * got / w.points_per_char)


_CALIBRATION_TEXT = "The quick brown fox jumps over the lazy dog, said Mary (twice) at 10:45."


def _smooth_noise(rng: np.random.Generator, s_N: np.ndarray, amp: float, wavelength: float, n: int = 3) -> np.ndarray:
  """Sum of n random sinusoids of s (wavelengths around `wavelength`), RMS about amp."""
  lam = wavelength * rng.uniform(0.5, 2.0, n)
  phase = rng.uniform(0.0, 2 * np.pi, n)
  a = amp * rng.uniform(0.5, 1.5, n) * np.sqrt(2.0 / n)
  return (a[:, None] * np.sin(2 * np.pi * s_N[None, :] / lam[:, None] + phase[:, None])).sum(0)


@functools.cache
def _hermite_basis(n: int) -> np.ndarray:
  """Cubic Hermite basis [n - 1, 4] (h00, h10, h01, h11) at the n - 1 interior points of n equal steps."""
  u = np.linspace(0.0, 1.0, n + 1)[1:-1, None]
  return np.concatenate([2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u, -2 * u**3 + 3 * u**2, u**3 - u**2], 1)


def _hermite(
  p0: np.ndarray, t0: tuple[float, float], p1: np.ndarray, t1: tuple[float, float], dist: float
) -> np.ndarray:
  """Interior points of a cubic Hermite join from p0 (direction t0) to p1 (direction t1)."""
  ctrl = np.array([p0, (dist * t0[0], dist * t0[1]), p1, (dist * t1[0], dist * t1[1])])
  return _hermite_basis(max(2, int(dist / 0.4))) @ ctrl


def _join_word(strokes: list[_Stroke], writer: Writer) -> list[_Stroke]:
  """Connect strokes of one word whose end and next start are close; skipped strokes come after."""
  remaining = list(strokes)
  out = []
  cos_corner = math.cos(math.radians(_CORNER_DEG))
  while remaining:
    cur = remaining.pop(0)
    pts, flags, t_out = [cur.pts_Nx2], [cur.corner_N.copy()], cur.t_out
    while cur.joinable:
      end = pts[-1][-1]
      found, gap = None, 0.0
      for j in range(min(writer.lookahead, len(remaining))):
        cand = remaining[j]
        dx = cand.pts_Nx2[0, 0] - end[0]
        gap = math.hypot(dx, cand.pts_Nx2[0, 1] - end[1])
        # Joins run forward (a crossbar starting back to the left is drawn after the word instead).
        # Marks (crossbars) join only each other ("tt" in one bar).
        if cand.joinable and cand.mark == cur.mark and gap < writer.join_dist and dx > -0.5 * _XH:
          found = j
          break
      if found is None:
        break
      nxt = remaining.pop(found)
      start = nxt.pts_Nx2[0]
      if gap > 0.3:  # pen-down bridge, smooth at both ends
        flags[-1][-1] = False
        bridge = _hermite(end, t_out, start, nxt.t_in, gap)
        pts += [bridge, nxt.pts_Nx2]
        flags += [np.zeros(len(bridge), bool), nxt.corner_N.copy()]
        flags[-1][0] = False
      else:  # the font already joins them: a corner only where the directions disagree
        flags[-1][-1] = t_out[0] * nxt.t_in[0] + t_out[1] * nxt.t_in[1] < cos_corner
        pts.append(nxt.pts_Nx2[1:])
        flags.append(nxt.corner_N[1:].copy())
      t_out = nxt.t_out
    out.append(cur._replace(pts_Nx2=np.concatenate(pts), corner_N=np.concatenate(flags), t_out=t_out))
  return out


def _layout(text: str, writer: Writer, rng: np.random.Generator) -> list[_Stroke]:
  """Place the glyphs of `text` (font units, y up) and join them into pen-down strokes per word."""
  glyphs = _font(writer.font)
  noise = writer.letter_noise
  n = len(text)
  size = 1.0 + noise * rng.normal(size=n)
  lift = noise * _XH * rng.normal(size=n)
  shear = noise * rng.normal(size=n)
  advance = rng.uniform(0.95, 1.06, n)
  space = rng.uniform(0.8, 1.25, n)
  x = 0.0
  strokes: list[_Stroke] = []
  word: list[_Stroke] = []
  for i, ch in enumerate(text):
    g = glyphs.get(ch)
    if g is None:
      raise ConfigError(f"data.embedded: character {ch!r} is not in the Hershey alphabet {ALPHABET!r}")
    if ch == " ":
      strokes += _join_word(word, writer)
      word = []
      x += g.width * writer.word_spacing * space[i]
      continue
    p = g.pts_Mx2 * size[i]
    p = np.stack([x + p[:, 0] + shear[i] * p[:, 1], p[:, 1] + lift[i]], 1)
    for k, st in enumerate(g.strokes):
      q = p[g.bounds[k] : g.bounds[k + 1]]
      if st.is_dot:  # a short tap in a random direction, a little higher for i and j
        ang = rng.uniform(0.0, 2 * np.pi)
        top = q[0] + ((0.0, rng.uniform(0.1, 0.4) * _XH) if ch in "ij" else (0.0, 0.0))
        q = np.stack([top, top + writer.dot_length * np.array([math.cos(ang), math.sin(ang)])])
      word.append(st._replace(pts_Nx2=q))
    x += g.width * size[i] * writer.letter_spacing * advance[i]
  strokes += _join_word(word, writer)
  return strokes


def _soft_relu(u: np.ndarray) -> np.ndarray:
  """Smooth max(u, 0) (width one font unit), so proportion warps leave no kinks."""
  return 0.5 * (u + np.sqrt(u * u + 1.0))


def _pen_path(
  strokes: list[_Stroke], writer: Writer, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Writer geometry and pen timing of a laid-out line.

  Returns the warped points [M, 2] of all strokes concatenated, the pen time of each segment [M - 1]
  (zero across pen-up moves) and the stroke id of each point [M]. Geometry: proportions, smooth jitter
  along arc length, scale, slant, baseline drift and tilt. Timing: speed ~ (curvature + 1/size)^-exponent
  (the two-thirds power law of handwriting) times smooth random variation.
  """
  pts = np.concatenate([st.pts_Nx2 for st in strokes])
  sid = np.repeat(np.arange(len(strokes)), [len(st.pts_Nx2) for st in strokes])
  s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
  x, y = pts[:, 0], pts[:, 1]
  y = y + (writer.ascender - 1.0) * _soft_relu(y - _XH) - (writer.descender - 1.0) * _soft_relu(-y)
  x = x + _smooth_noise(rng, s, writer.jitter_amp, writer.jitter_wavelength)
  y = y + _smooth_noise(rng, s, writer.jitter_amp, writer.jitter_wavelength)
  size = writer.scale * float(np.exp(rng.normal(0.0, 0.03)))
  slant = writer.slant + float(rng.normal(0.0, np.deg2rad(2.0)))
  tilt = writer.tilt + float(rng.normal(0.0, np.deg2rad(0.7)))
  x = x * size * writer.aspect
  y = y * size
  x = x + math.tan(slant) * y
  y = y + writer.drift_amp * np.sin(2 * np.pi * x / writer.drift_wavelength + rng.uniform(0, 2 * np.pi))
  c, sn = math.cos(tilt), math.sin(tilt)
  warped = np.stack([c * x - sn * y, sn * x + c * y], 1)

  seg = np.hypot(*np.diff(warped, axis=0).T)
  down = sid[1:] == sid[:-1]
  ang = _turn_angles(warped)
  ang[1:-1][~(down[1:] & down[:-1])] = 0.0  # no turning across pen-up moves
  ds = np.maximum(np.concatenate([seg[:1], 0.5 * (seg[1:] + seg[:-1]), seg[-1:]]), 1e-6)
  kappa = np.convolve(np.pad(ang / ds, 2, mode="edge"), np.ones(5) / 5, mode="valid")
  speed = (kappa * size * _XH + 1.0) ** (-writer.speed_exponent)
  speed = speed * np.exp(_smooth_noise(rng, s, writer.speed_noise, 2.5 * _XH))
  times = np.where(down, seg / (0.5 * (speed[1:] + speed[:-1])), 0.0)
  return warped, times, sid


def write_line(
  text: str, writer: Writer, rng: np.random.Generator, x_height: float, jitter_time: bool = True
) -> np.ndarray:
  """Render `text` in `writer`'s hand: float32 [T, 3] offsets (y up, eos on each stroke's last point).

  `x_height` sets the output units; `jitter_time=False` samples at exactly `writer.time_step` (calibration).
  """
  strokes = _layout(text, writer, rng)
  pts, times, sid = _pen_path(strokes, writer, rng)
  n_strokes = len(strokes)
  corner = np.concatenate([st.corner_N for st in strokes])
  first = np.concatenate([[True], sid[1:] != sid[:-1]])
  last = np.concatenate([sid[1:] != sid[:-1], [True]])
  corner = corner | first | last
  # Global clock: pen-down time plus one unit per pen-up move, so it increases strictly across strokes.
  clock = np.concatenate([[0.0], np.cumsum(times + np.where(times > 0, 1e-9, 1.0))])
  t0, t1 = clock[first], clock[last]
  dt = writer.time_step * (float(np.exp(rng.normal(0.0, 0.05))) if jitter_time else 1.0)
  n = np.maximum(2, np.rint((t1 - t0) / dt).astype(int) + 1)
  k = np.repeat(np.arange(n_strokes), n)
  j = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
  step_k = (t1 - t0) / (n - 1)
  ts = t0[k] + j * step_k[k]
  # Keep corners as samples: drop regular samples too close to one, then add the corner times.
  tc = clock[corner]
  pos = np.clip(np.searchsorted(tc, ts), 1, len(tc) - 1)
  near = np.minimum(np.abs(ts - tc[pos - 1]), np.abs(ts - tc[pos])) < 0.4 * step_k[k]
  ts = np.unique(np.concatenate([ts[~near], tc]))
  out = np.stack([np.interp(ts, clock, pts[:, 0]), np.interp(ts, clock, pts[:, 1])], 1)
  eos = np.isin(ts, t1).astype(np.float32)
  out *= x_height / _XH
  offsets = np.diff(out, axis=0, prepend=np.zeros((1, 2)))
  return np.concatenate([offsets, eos[:, None]], 1).astype(np.float32)


def font_list(fonts: str) -> tuple[str, ...]:
  """The font names of a `data.embedded.fonts` string ("scripts,cursive"); ValueError for none or an unknown one."""
  names = tuple(f.strip() for f in str(fonts).split(",") if f.strip())
  if not names or any(f not in FONTS for f in names):
    raise ValueError(f"expected a comma-separated list of Hershey fonts from {FONTS}, got {fonts!r}")
  return names


class _Writers:
  """Writer k drawn on first use from its own seeded stream (the same whichever lines need it)."""

  def __init__(self, cfg: ml_collections.ConfigDict, fonts: tuple[str, ...] | None = None):
    self._fonts = fonts or font_list(cfg.fonts)
    self._seed, self._ppc = int(cfg.seed), float(cfg.points_per_char)
    self._cache: dict[int, Writer] = {}

  def __getitem__(self, k: int) -> Writer:
    if k not in self._cache:
      rng = np.random.default_rng([self._seed, _WRITER, k])
      self._cache[k] = make_writer(rng, self._fonts, self._ppc)
    return self._cache[k]


def writer_styles(cfg: ml_collections.ConfigDict, fonts: tuple[str, ...] | None = None) -> _Writers:
  """The writers of a `data.embedded` config by index, each drawn on first use; `fonts` replaces `cfg.fonts`."""
  return _Writers(cfg, fonts)


def _line_text(
  cfg: ml_collections.ConfigDict, stream: int, index: int, avoid: frozenset[str] | set[str] = frozenset()
) -> tuple[str, np.random.Generator]:
  """Text of one line and its generator (which then draws the writer and the line's own noise)."""
  rng = np.random.default_rng([int(cfg.seed), stream, index])
  for _ in range(50):  # a text not in `avoid` where possible (single common words may all be taken)
    text = vocabulary.random_sentence(rng, int(cfg.min_words), int(cfg.max_words))
    if text not in avoid:
      break
  return text, rng


def corpus_texts(cfg: ml_collections.ConfigDict) -> tuple[list[str], list[str]]:
  """(train_texts, valid_texts) exactly as `generate_corpus` makes them, without drawing any strokes."""
  train = [_line_text(cfg, _TRAIN, i)[0] for i in range(int(cfg.num_lines))]
  seen = set(train)
  return train, [_line_text(cfg, _VALID, i, seen)[0] for i in range(int(cfg.valid_lines))]


def _line_writer(cfg: ml_collections.ConfigDict, rng: np.random.Generator, validation: bool) -> int:
  """The writer of a line, drawn from the line's generator right after its text: a training writer, or (validation,
  with probability `valid_new_writer_fraction`) one of the `valid_writers` held-out writers."""
  n_train_writers, n_valid_writers = int(cfg.num_writers), int(cfg.valid_writers)
  if validation and n_valid_writers and rng.random() < float(cfg.valid_new_writer_fraction):
    return n_train_writers + int(rng.integers(n_valid_writers))
  return int(rng.integers(n_train_writers))


def corpus_writers(cfg: ml_collections.ConfigDict) -> tuple[list[int], list[int]]:
  """(train_writers, valid_writers): the writer index of every line exactly as `generate_corpus` draws it, without
  drawing any strokes (a writer's lines share a hand: the style-fidelity measure groups lines by writer)."""
  train = [_line_writer(cfg, _line_text(cfg, _TRAIN, i)[1], False) for i in range(int(cfg.num_lines))]
  seen = set(corpus_texts(cfg)[0])
  return train, [_line_writer(cfg, _line_text(cfg, _VALID, i, seen)[1], True) for i in range(int(cfg.valid_lines))]


def generate_corpus(
  cfg: ml_collections.ConfigDict,
) -> tuple[list[np.ndarray], list[str], list[np.ndarray], list[str]]:
  """Generate (train_lines, train_texts, valid_lines, valid_texts) from the `data.embedded` config.

  Training lines are written by writers 0..num_writers-1; a `valid_new_writer_fraction` share of the
  validation lines by `valid_writers` held-out writers, the rest by training writers. Validation texts are
  drawn from their own stream and avoid the training texts where possible (`cfg` as validation validates it).
  """
  writers = _Writers(cfg)
  x_height = float(cfg.x_height)
  train_lines, train_texts = [], []
  for i in range(int(cfg.num_lines)):
    text, rng = _line_text(cfg, _TRAIN, i)
    train_lines.append(write_line(text, writers[_line_writer(cfg, rng, False)], rng, x_height))
    train_texts.append(text)
  seen = set(train_texts)
  valid_lines, valid_texts = [], []
  for i in range(int(cfg.valid_lines)):
    text, rng = _line_text(cfg, _VALID, i, seen)
    valid_lines.append(write_line(text, writers[_line_writer(cfg, rng, True)], rng, x_height))
    valid_texts.append(text)
  return train_lines, train_texts, valid_lines, valid_texts
