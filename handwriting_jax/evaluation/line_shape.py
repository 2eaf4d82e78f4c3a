"""How cleanly a written line is laid out: ink after the text (a stray mark past the last character) and a baseline
that jumps between words; reported by `evaluate` beside legibility, as shares of the lines written.

Both are measured on the line as the network wrote it (raw offsets at its own point rate, y up) with the attention
window of each step (φ, `Samples.line_phi`), so they need no OCR:

- **Ink after the text**: a stroke that begins after the window's peak on the last character (the step where φ on it
  is largest) and lies wholly to the right of everything written before it by more than `GAP` line heights, whatever
  its size: a mark (a hyphen, a colon, a dot after the last word), a letter-sized stroke (a "4" after "17-19.") or a
  scribble. The last letter itself (begun as the window reaches it, before the peak) does not count, nor do its late
  strokes (the dot of a final i, the bar of a t), which start above or across ink already written. Until 2026-12-07
  only marks (under 0.4 line heights tall and wide) and strokes set off by a word's gap counted: letter-sized strokes
  just after the text were missed.
- **Baseline jump**: the ink split into words at horizontal gaps wider than `WORD_GAP` line heights; each word's
  baseline is the 25th percentile of its points' heights (robust to descenders); marks under half a word high (a
  hyphen, a lone dot) are left out. A line may rise or fall steadily (many hands do): its typical rise per unit of x
  is the median over neighbouring words, and a line jumps when two neighbouring words' baselines differ from it by
  more than `JUMP` word heights (the median height of its words). The line height (for the gaps) is the spread of
  the ink's y between its 10th and 90th percentiles.
"""

from collections.abc import Sequence

import numpy as np

from handwriting_jax.data import strokes as strokes_lib

GAP = 0.1  # line heights of clear space before a stroke counted as ink after the text
WORD_GAP = 0.6  # line heights of horizontal space that separate two words
JUMP = 0.5  # word heights between neighbouring words' baselines, beyond the line's rise, that count as a jump


def _strokes_with_starts(line_Tx3: np.ndarray) -> tuple[list[np.ndarray], list[int]]:
  """The pen-down strokes of a line as absolute points [n, 2], and the row at which each begins."""
  strokes = strokes_lib.offsets_to_strokes(line_Tx3)
  starts = np.concatenate([[0], np.cumsum([len(s) for s in strokes])[:-1]]).astype(int).tolist()
  return strokes, starts


def line_height(points_Nx2: np.ndarray) -> float:
  """The spread of the ink's y between its 10th and 90th percentiles (a robust height of the writing)."""
  lo, hi = np.percentile(points_Nx2[:, 1], [10, 90])
  return max(float(hi - lo), 1e-6)


def ink_after_text(line_Tx3: np.ndarray, phi_TxU: np.ndarray) -> bool:
  """True when a stroke begins after the window's peak on the last character, clear of all earlier ink to its right
  (the module's definition)."""
  strokes, starts = _strokes_with_starts(line_Tx3)
  if len(strokes) < 2 or phi_TxU.shape[1] == 0:
    return False
  peak = int(np.argmax(phi_TxU[: len(line_Tx3), -1]))
  height = line_height(np.concatenate(strokes))
  right_so_far = float(strokes[0][:, 0].max())
  for stroke, start in zip(strokes[1:], starts[1:]):
    if start > peak and float(stroke[:, 0].min()) - right_so_far > GAP * height:
      return True
    right_so_far = max(right_so_far, float(stroke[:, 0].max()))
  return False


def _words(line_Tx3: np.ndarray) -> list[np.ndarray]:
  """The ink of each word, left to right, as its strokes' points: strokes split at horizontal gaps wider than
  `WORD_GAP` line heights."""
  strokes, _ = _strokes_with_starts(line_Tx3)
  height = line_height(np.concatenate(strokes))
  words: list[list[np.ndarray]] = []
  right = -np.inf
  for stroke in sorted(strokes, key=lambda s: float(s[:, 0].min())):
    if not words or float(stroke[:, 0].min()) > right + WORD_GAP * height:
      words.append([])
    words[-1].append(stroke)
    right = max(right, float(stroke[:, 0].max()))
  return words


def word_baselines(line_Tx3: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
  """(x centre, baseline) of each word at least half the median word height, left to right, and that median height:
  a word's baseline is the 25th percentile of its points' heights (words split at wide gaps)."""
  points = [np.concatenate(word) for word in _words(line_Tx3)]
  heights = [float(np.ptp(p[:, 1])) for p in points]
  height = max(float(np.median(heights)), 1e-6)
  kept = [p for p, h in zip(points, heights) if h >= 0.5 * height]
  centres = np.array([p[:, 0].mean() for p in kept])
  baselines = np.array([np.percentile(p[:, 1], 25) for p in kept])
  return centres, baselines, height


def baseline_jump(line_Tx3: np.ndarray) -> bool:
  """True when two neighbouring words' baselines differ, beyond the line's typical rise, by more than `JUMP`
  word heights (the module's definition)."""
  centres, baselines, height = word_baselines(line_Tx3)
  if len(baselines) < 2:
    return False
  dx, db = np.diff(centres), np.diff(baselines)
  rise = float(np.median(db / np.maximum(dx, 1e-6))) if len(db) >= 2 else 0.0
  return bool(np.any(np.abs(db - rise * dx) > JUMP * height))


def line_shape_rates(lines: Sequence[np.ndarray], phis: Sequence[np.ndarray]) -> dict:
  """Shares of `lines` (raw offsets at the network's rate, with their windows φ) with ink after the text and with a
  baseline jump, and the indices of the lines flagged."""
  after = [i for i, (line, phi) in enumerate(zip(lines, phis)) if ink_after_text(line, phi)]
  jumps = [i for i, line in enumerate(lines) if baseline_jump(line)]
  n = max(len(lines), 1)
  return {
    "lines": len(lines),
    "ink_after_text": len(after) / n,
    "baseline_jumps": len(jumps) / n,
    "ink_after_text_lines": after,
    "baseline_jump_lines": jumps,
  }
