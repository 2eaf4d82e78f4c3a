"""Word pieces: lines cut at the pen-up gaps between words, for a first training stage of short, aligned sequences.

A line whose transcription has n spaces is cut at its n widest horizontal pen-up gaps when those gaps are clearly
wider than every other gap and no stroke after a cut reaches back over it (a delayed i dot or t bar of an earlier word
would); other lines are left whole. The words are then grouped into pieces of 1..`max_words` consecutive words. A
piece keeps its strokes' offsets; its first row is the line's first row (the pen at the origin), so a piece looks
exactly like a short line. Short sequences make cheap steps and let the attention window align within minutes; the
full lines follow in the next curriculum stage.
"""

from collections.abc import Sequence

import numpy as np

from handwriting_jax.data import strokes as strokes_lib

# A cut gap must be at least this many times the widest gap that is not cut (the words must stand apart).
MIN_GAP_RATIO = 1.5


def written_words(text: str) -> list[str]:
  """The words of a transcription as they are written: IAM puts spaces around punctuation ("Mr . Smith ,") that
  the pen does not leave, so a token without a letter or digit joins the word before it (the first word after)."""
  words, pending = [], ""
  for token in text.split():
    if any(c.isalnum() for c in token):
      words.append(f"{pending} {token}".strip())
      pending = ""
    elif words:
      words[-1] += " " + token
    else:
      pending = f"{pending} {token}".strip()
  if pending:
    words.append(pending)
  return words


def word_cuts(raw_Tx3: np.ndarray, num_words: int) -> list[int] | None:
  """Row indices where the words 2..num_words of a raw line start (each the first row of a stroke), or None when
  the line's pen-up gaps do not show that many words clearly."""
  if num_words < 2:
    return []
  points = strokes_lib.offsets_to_points(raw_Tx3)
  ends = np.flatnonzero(points[:, 2] > 0.5) + 1
  if ends.size == 0 or ends[-1] != len(points):
    ends = np.append(ends, len(points))
  starts = np.concatenate([[0], ends[:-1]])
  if len(starts) < num_words:
    return None
  xs = points[:, 0]
  lo = np.array([xs[a:b].min() for a, b in zip(starts, ends)])
  hi = np.maximum.accumulate([xs[a:b].max() for a, b in zip(starts, ends)])
  gaps = lo[1:] - hi[:-1]  # gap before stroke k+1: its left edge minus the right edge of everything so far
  order = np.argsort(-gaps, kind="stable")
  chosen, rest = np.sort(order[: num_words - 1]), order[num_words - 1 :]
  if gaps[chosen].min() <= 0 or (rest.size and gaps[chosen].min() < MIN_GAP_RATIO * max(gaps[rest].max(), 0.0)):
    return None
  cut_strokes = chosen + 1
  # No stroke of a later word may reach back left of the cut before it.
  bounds = list(cut_strokes) + [len(starts)]
  for first, nxt in zip(cut_strokes, bounds[1:]):
    if lo[first:nxt].min() < hi[first - 1]:
      return None
  return [int(starts[k]) for k in cut_strokes]


def split_into_pieces(
  lines: Sequence[np.ndarray], texts: Sequence[str], stats: strokes_lib.NormStats, max_words: int, seed: int
) -> tuple[list[np.ndarray], list[str], int]:
  """(piece strokes, piece texts, number of lines that were cut) from normalised lines and their texts.

  Lines that cannot be cut clearly (see `word_cuts`) are kept whole; piece lengths are drawn uniformly in
  1..max_words words from `seed`, so the pieces are a pure function of the data and the seed.
  """
  if max_words < 1:
    raise ValueError(f"max_words must be >= 1, got {max_words}")
  rng = np.random.default_rng(seed)
  out_lines, out_texts, cut = [], [], 0
  for line, text in zip(lines, texts):
    words = written_words(text)
    cuts = word_cuts(stats.denormalise(line), len(words)) if text.strip() == " ".join(words) else None
    if not cuts:
      out_lines.append(line)
      out_texts.append(text)
      continue
    cut += 1
    bounds = [0] + cuts + [len(line)]
    w = 0
    while w < len(words):
      n = int(rng.integers(1, max_words + 1))
      piece = np.array(line[bounds[w] : bounds[min(w + n, len(words))]], copy=True)
      piece[0, :2] = line[0, :2]  # start at the origin, as every line does
      out_lines.append(piece)
      out_texts.append(" ".join(words[w : w + n]))
      w += n
  return out_lines, out_texts, cut
