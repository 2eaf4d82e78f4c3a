"""Random affine augmentation of training lines: each line slanted and stretched by its own small random amounts.

IAM-OnDB holds 9,054 training lines from about 200 writers; a network wide enough to write them well memorises them
(docs/training.md). Drawing each line of a batch with a random shear (slant) and random horizontal and vertical
scales gives the network new hands of the same texts: the pen's offsets d = (dx, dy) become A d with

    A = [[sx, 0], [0, sy]] @ [[1, k], [0, 1]],   k ~ U(-slant, slant),   log sx, log sy ~ U(-scale, scale).

Offsets are normalised ((d - mean) / std, `strokes.NormStats`), so `Augmentation` maps a normalised line back to raw
offsets with the data's statistics, applies A and normalises again; pen lifts are untouched. A is drawn from the
generator it is given, so a batch iterator that seeds it from its own position yields the same batches after a
restore.
"""

import dataclasses

import numpy as np

from handwriting_jax.data.strokes import NormStats


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """Random shear and scale of lines `[T, 3]` normalised by `stats` (see the module docstring)."""

  slant: float
  scale: float
  stats: NormStats

  def __post_init__(self):
    if not (0 <= self.slant < 1 and 0 <= self.scale < 1):
      raise ValueError(f"slant and scale must be in [0, 1), got {self.slant} and {self.scale}")

  def matrix(self, rng: np.random.Generator) -> np.ndarray:
    """One random [2, 2] map A of raw offsets (column vectors): scale after shear."""
    k = rng.uniform(-self.slant, self.slant)
    sx, sy = np.exp(rng.uniform(-self.scale, self.scale, size=2))
    return np.array([[sx, sx * k], [0.0, sy]])

  def __call__(self, line_Tx3: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The normalised line drawn by a random A (a new array; pen lifts kept)."""
    raw_Tx3 = self.stats.denormalise(line_Tx3)
    raw_Tx3[:, :2] = raw_Tx3[:, :2] @ self.matrix(rng).T.astype(np.float32)
    return self.stats.normalise(raw_Tx3)
