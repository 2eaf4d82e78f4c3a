"""Digit-rich Hershey lines mixed into a real corpus's training split (`config.data.synthetic_lines`).

IAM-OnDB has a digit on about 3% of its training lines and Q, X or Z on fewer, so a writer trained on it draws them
badly (merged, dropped, a "5" in pieces). This module writes extra training lines whose texts are rich in numbers as
people write them (phone numbers, clock times, dates, prices, years), names, codes in capitals and punctuation, in
Hershey's single-stroke print font (`hershey.PRINT_FONT`: plain print capitals, where the script fonts' are ornate)
by the embedded corpus's synthetic writers (`hershey.py`: each its own slant, size, spacing, jitter and pen speed),
at the size and pen rate of the real lines: the points per character and the horizontal extent per character are
measured on the real training split (after preprocessing) and the synthetic lines are generated and scaled to
match. They join the training split only: validation stays real, and the normalisation is fitted on the real lines
alone.
"""

import dataclasses

import ml_collections
import numpy as np

from handwriting_jax.data import cache as cache_lib
from handwriting_jax.data import hershey, vocabulary
from handwriting_jax.data import strokes as strokes_lib

_STREAM = 7  # the generator stream of synthetic lines (the embedded corpus uses its own streams)
# Texts are kept this much under the real lines' length limit (raw points / points per character), since the
# pen rate of a synthetic writer varies about its target.
_LENGTH_MARGIN = 0.75
_CALIBRATION_LINES = 50  # lines written first to aim the pen rate


ID_PREFIX = "synthetic-"  # the line ids of the synthetic lines: synthetic-w{writer}-{index}


def is_synthetic(line_id: str) -> bool:
  """Whether a training line id names a synthetic line (so a curriculum stage can leave them out)."""
  return line_id.startswith(ID_PREFIX)


@dataclasses.dataclass(frozen=True)
class Scale:
  """The real lines' pen rate and size: raw points per character (before `data.downsample`), and the horizontal
  extent per character in their units (after preprocessing)."""

  points_per_char: float
  extent_per_char: float

  @classmethod
  def of(cls, split: cache_lib.CachedSplit, downsample: int) -> "Scale":
    """Measured on preprocessed (not normalised) lines and their texts."""
    chars = sum(len(t) for t in split.texts)
    if not chars:
      raise ValueError("no training text to measure the lines' scale on")
    points = sum(len(x) for x in split.lines) * downsample
    extent = sum(float(np.sum(x[:, 0])) for x in split.lines)
    return cls(points_per_char=points / chars, extent_per_char=extent / chars)


def numeric_text(rng: np.random.Generator, max_chars: int) -> str:
  """A short text with one to three numbers as people write them (`vocabulary.numeric_sentence`), at most
  `max_chars` long."""
  for _ in range(100):
    text = vocabulary.numeric_sentence(rng)
    if len(text) <= max_chars:
      return text
  return vocabulary.numeric_sentence(rng)[:max_chars].strip()


def _write(
  num_lines: int,
  points_per_char: float,
  max_chars: int,
  settings: strokes_lib.Preprocessing,
  cfg: ml_collections.ConfigDict,
) -> cache_lib.CachedSplit:
  """`num_lines` digit-rich lines by the `cfg` (`data.embedded`) writers at a raw pen rate of `points_per_char`,
  preprocessed; lines that preprocessing drops (over `max_points`) are left out."""
  writers_cfg = ml_collections.ConfigDict(cfg.to_dict())
  writers_cfg.points_per_char = points_per_char
  writers = hershey.writer_styles(writers_cfg, fonts=(hershey.PRINT_FONT,))
  out = cache_lib.CachedSplit(lines=[], texts=[], ids=[])
  for i in range(num_lines):
    rng = np.random.default_rng([int(cfg.seed), _STREAM, i])
    text = numeric_text(rng, max_chars)
    w = int(rng.integers(int(cfg.num_writers)))
    line, _ = strokes_lib.preprocess_line(hershey.write_line(text, writers[w], rng, float(cfg.x_height)), settings)
    if line is not None:
      out.lines.append(line)
      out.texts.append(text)
      out.ids.append(f"{ID_PREFIX}w{w}-{i}")
  return out


def synthetic_split(
  num_lines: int,
  scale: Scale,
  settings: strokes_lib.Preprocessing,
  embedded_cfg: ml_collections.ConfigDict,
) -> cache_lib.CachedSplit:
  """`num_lines` digit-rich lines (fewer where some are over `settings.max_points`) by the `embedded_cfg` writers,
  preprocessed as `settings` and scaled to `scale`. A pure function of its arguments."""
  max_chars = max(4, int(_LENGTH_MARGIN * settings.max_points / scale.points_per_char))
  # Preprocessing keeps each stroke's last point and the digits are separate strokes: aim the pen rate so that the
  # preprocessed lines have the real lines' points per character (measured on a first few lines).
  probe = _write(_CALIBRATION_LINES, scale.points_per_char, max_chars, settings, embedded_cfg)
  rate = scale.points_per_char
  if probe.lines:
    got = Scale.of(probe, settings.downsample).points_per_char
    rate *= scale.points_per_char / got
  out = _write(num_lines, rate, max_chars, settings, embedded_cfg)
  if out.lines:
    factor = np.float32(scale.extent_per_char / Scale.of(out, settings.downsample).extent_per_char)
    for line in out.lines:
      line[:, :2] *= factor
  return out
