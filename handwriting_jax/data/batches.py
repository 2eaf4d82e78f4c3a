"""Bucketed, padded training batches with a checkpointable position.

Lines are grouped into a few length buckets chosen once at construction, so every batch has one of a small,
fixed set of padded shapes (`padded_shapes`, one jit compile each). Each bucket's T is a length quantile
rounded up to a multiple of 32 (the last one covers the longest line); each bucket's U is its longest
text rounded up to a multiple of 8. A bucket with fewer lines than a global batch is merged into its
neighbour, so a batch only repeats a line when the whole split is smaller than one batch.

Epoch `e` is a pure function of `(seed, e)`: lines are shuffled within each bucket, cut into full global
batches (the last batch of a bucket is filled by wrapping around to the start of that bucket's shuffled
order, so every line is seen and every batch is full), and the batch order is shuffled. The iterator's
state is therefore just `(epoch, position)`, and a restored iterator yields exactly the same batches.

Multi-host: every host builds the same global order from the seed and keeps its slice
`[process_index * B:(process_index + 1) * B]` of each global batch, B = batch_size // process_count.
"""

import zlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from handwriting_jax.data.alphabet import Alphabet

T_MULTIPLE = 32  # padded stroke lengths are multiples of this
U_MULTIPLE = 8  # padded text lengths are multiples of this
FIRST_INPUT = (0.0, 0.0, 1.0)  # network input at t = 0 (the pen lifted at the origin)


def oversampled(
  strokes: Sequence[np.ndarray], texts: Sequence[str], chars: str, factor: int
) -> tuple[list[np.ndarray], list[str], int]:
  """(strokes, texts, count): each line whose text holds one of `chars` repeated `factor` times, so rare characters
  are seen more often per epoch; `count` is how many lines were repeated."""
  if factor < 1:
    raise ValueError(f"oversample factor must be at least 1, got {factor}")
  rare = set(chars)
  hits = [i for i, text in enumerate(texts) if rare and not rare.isdisjoint(text)] if factor > 1 else []
  extra = [i for i in hits for _ in range(factor - 1)]
  return list(strokes) + [strokes[i] for i in extra], list(texts) + [texts[i] for i in extra], len(hits)


def _round_up(x: np.ndarray | int, multiple: int) -> np.ndarray:
  """Round up to a positive multiple of `multiple`."""
  return np.maximum(-(-np.asarray(x) // multiple) * multiple, multiple)


def fitted_batch(
  lines: Sequence[np.ndarray], char_ids: Sequence[np.ndarray], batch: int, t_multiple: int = T_MULTIPLE
) -> dict[str, np.ndarray]:
  """`pad_batch` at the smallest padded sizes that hold these lines: T rounded up to `t_multiple`, U to U_MULTIPLE
  (few shapes, few compiles), for batches made outside the training iterator (validation NLL, adaptation)."""
  t = int(_round_up(max(len(s) for s in lines), t_multiple))
  u = int(_round_up(max((len(c) for c in char_ids), default=0), U_MULTIPLE))
  return pad_batch(lines, char_ids, batch, t, u)


def _bucket_edges(lengths_N: np.ndarray, num_buckets: int, min_lines: int) -> np.ndarray:
  """Ascending padded lengths: quantile edges rounded up to T_MULTIPLE, small buckets merged."""
  quantiles = np.arange(1, num_buckets + 1) / num_buckets
  # "inverted_cdf" returns actual lengths, so every bucket owns at least one line.
  q = np.quantile(lengths_N, quantiles, method="inverted_cdf")
  edges = list(np.unique(_round_up(q.astype(np.int64), T_MULTIPLE)))
  while len(edges) > 1:
    counts = np.bincount(np.searchsorted(edges, lengths_N), minlength=len(edges))
    small = np.flatnonzero(counts < min_lines)
    if small.size == 0:
      break
    i = int(small[0])
    # Merge bucket i into the next longer one (drop its edge); the longest bucket merges downwards.
    del edges[i if i < len(edges) - 1 else i - 1]
  return np.asarray(edges, dtype=np.int64)


def pad_batch(
  lines: Sequence[np.ndarray], char_ids: Sequence[np.ndarray], batch: int, t: int, u: int
) -> dict[str, np.ndarray]:
  """The teacher-forcing layout of every batch: lines [n_i, 3] as targets padded to [batch, t, 3], inputs shifted by
  one step behind FIRST_INPUT, texts padded to [batch, u], with masks; rows past the lines are fully masked."""
  out = {
    "inputs": np.zeros((batch, t, 3), np.float32),
    "targets": np.zeros((batch, t, 3), np.float32),
    "mask": np.zeros((batch, t), np.float32),
    "chars": np.zeros((batch, u), np.int32),
    "char_mask": np.zeros((batch, u), np.float32),
  }
  for b, (line, ids) in enumerate(zip(lines, char_ids)):
    n = len(line)
    out["targets"][b, :n] = line
    if n:
      out["inputs"][b, 0] = FIRST_INPUT
      out["inputs"][b, 1:n] = line[:-1]
    out["mask"][b, :n] = 1.0
    out["chars"][b, : len(ids)] = ids
    out["char_mask"][b, : len(ids)] = 1.0
  return out


class BatchIterator(Iterator[dict[str, np.ndarray]]):
  """Infinite iterator over shuffled epochs of bucketed batches (see the module docstring)."""

  def __init__(
    self,
    strokes: Sequence[np.ndarray],
    texts: Sequence[str],
    alphabet: Alphabet,
    batch_size: int,
    num_buckets: int,
    seed: int,
    max_points: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
  ):
    """Check the arguments, drop lines longer than `max_points`, encode the texts and choose the buckets; `augment`
    (e.g. `augment.Augmentation`) redraws each line of a batch with a generator seeded by (seed, epoch, position)."""
    if len(strokes) != len(texts):
      raise ValueError(f"got {len(strokes)} stroke lines but {len(texts)} texts")
    if process_count < 1 or not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} is not in [0, process_count={process_count})")
    if batch_size < 1 or batch_size % process_count:
      raise ValueError(
        f"batch_size {batch_size} must be a positive multiple of process_count {process_count}: "
        "each host loads an equal slice of the global batch"
      )
    if num_buckets < 1:
      raise ValueError(f"num_buckets must be at least 1, got {num_buckets}")
    if max_points is not None and max_points < 1:
      raise ValueError(f"max_points must be positive or None, got {max_points}")
    for i, line in enumerate(strokes):
      if line.ndim != 2 or line.shape[1] != 3 or line.shape[0] < 1:
        raise ValueError(f"stroke line {i} has shape {line.shape}; expected [T, 3] with T >= 1")

    self.seed = int(seed)
    self.alphabet = alphabet
    self.global_batch_size = int(batch_size)
    self.batch_size = int(batch_size) // process_count  # this host's B
    self.process_index = int(process_index)
    self.process_count = int(process_count)
    self.max_points = max_points
    self.augment = augment

    all_lengths = np.array([len(s) for s in strokes], dtype=np.int64)
    keep = np.ones(len(strokes), bool) if max_points is None else all_lengths <= max_points
    self.line_indices = np.flatnonzero(keep)  # indices of the used lines in the given lists
    self.num_lines = int(self.line_indices.size)
    self.num_excluded = len(strokes) - self.num_lines
    if self.num_lines == 0:
      shortest = int(all_lengths.min()) if all_lengths.size else 0
      raise ValueError(
        f"no line fits: {len(strokes)} lines given, max_points={max_points}, shortest line has {shortest} points"
      )

    # Flat storage: line i occupies rows [start[i], start[i] + length[i]) of points_Nx3 (same for chars).
    lines = [np.asarray(strokes[i], dtype=np.float32) for i in self.line_indices]
    self._lengths = all_lengths[keep]
    self._starts = np.concatenate([[0], np.cumsum(self._lengths)[:-1]]).astype(np.int64)
    self._points = np.concatenate(lines, axis=0)
    if not np.all(np.isfinite(self._points)):
      bad = next(int(self.line_indices[i]) for i, s in enumerate(lines) if not np.all(np.isfinite(s)))
      raise ValueError(f"stroke line {bad} holds non-finite values")

    char_ids, self.unknown_count = alphabet.encode_all([texts[i] for i in self.line_indices], on_unknown="map")
    self._text_lengths = np.array([len(c) for c in char_ids], dtype=np.int64)
    self._text_starts = np.concatenate([[0], np.cumsum(self._text_lengths)[:-1]]).astype(np.int64)
    # One trailing PAD so gathers of texts that are all empty still index a valid row.
    self._chars = np.concatenate(char_ids + [np.zeros(1, np.int32)]).astype(np.int32)

    edges = _bucket_edges(self._lengths, num_buckets, self.global_batch_size)
    bucket_of_line = np.searchsorted(edges, self._lengths)
    self._bucket_lines = [np.flatnonzero(bucket_of_line == b) for b in range(len(edges))]
    self.padded_shapes: list[tuple[int, int]] = [
      (int(t), int(_round_up(self._text_lengths[idx].max(), U_MULTIPLE))) for t, idx in zip(edges, self._bucket_lines)
    ]
    self._batches_per_bucket = [-(-len(idx) // self.global_batch_size) for idx in self._bucket_lines]
    self.steps_per_epoch = int(sum(self._batches_per_bucket))
    self._fingerprint = self._compute_fingerprint()

    self._epoch = 0
    self._position = 0
    self._schedule = self._epoch_schedule(0)

  @property
  def mean_padded_length(self) -> float:
    """Mean padded length T of this iterator's batches over an epoch (what one of its steps costs, roughly)."""
    counts = np.asarray(self._batches_per_bucket, np.float64)
    return float(counts @ np.asarray([t for t, _ in self.padded_shapes], np.float64) / counts.sum())

  # ----- epoch order -----

  def _epoch_schedule(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(bucket per step [S], global line indices per step [S, G]) of `epoch`, from (seed, epoch) alone."""
    rng = np.random.default_rng([self.seed, epoch])
    g = self.global_batch_size
    buckets, rows = [], []
    for b, idx in enumerate(self._bucket_lines):
      perm = idx[rng.permutation(idx.size)]
      n_batches = self._batches_per_bucket[b]
      rows.append(perm[np.arange(n_batches * g) % idx.size].reshape(n_batches, g))
      buckets.append(np.full(n_batches, b, dtype=np.int64))
    order = rng.permutation(self.steps_per_epoch)
    return np.concatenate(buckets)[order], np.concatenate(rows, axis=0)[order]

  def _compute_fingerprint(self) -> int:
    """A checksum of everything that fixes the global order (lines, buckets, batch size, seed)."""
    h = zlib.crc32(np.asarray([self.seed, self.global_batch_size, self.num_lines], np.int64).tobytes())
    h = zlib.crc32(self._lengths.tobytes(), h)
    h = zlib.crc32(self._text_lengths.tobytes(), h)
    h = zlib.crc32(np.asarray(self.padded_shapes, np.int64).tobytes(), h)
    return int(h)

  @property
  def epoch(self) -> int:
    """Index of the epoch the next batch comes from."""
    return self._epoch

  @property
  def position(self) -> int:
    """Index of the next batch within its epoch (0 .. steps_per_epoch - 1)."""
    return self._position

  # ----- checkpointing -----

  def state(self) -> dict[str, np.ndarray]:
    """The position as int64 scalar arrays (fits an Orbax tree; survives np.savez / np.load)."""
    return {
      "epoch": np.asarray(self._epoch, np.int64),
      "position": np.asarray(self._position, np.int64),
      "fingerprint": np.asarray(self._fingerprint, np.int64),
    }

  def restore(self, state: dict) -> None:
    """Continue from `state()` of an iterator built with the same lines, batch size, buckets and seed."""
    missing = {"epoch", "position", "fingerprint"} - set(state)
    if missing:
      raise ValueError(f"batch iterator state lacks {sorted(missing)}")
    if int(np.asarray(state["fingerprint"])) != self._fingerprint:
      raise ValueError(
        "batch iterator state comes from an iterator over different lines, batch size, "
        "buckets, max_points or seed; build it with the same data and config.data fields "
        "as the run that saved it"
      )
    epoch, position = int(np.asarray(state["epoch"])), int(np.asarray(state["position"]))
    if epoch < 0 or not 0 <= position < self.steps_per_epoch:
      raise ValueError(
        f"batch iterator state (epoch {epoch}, position {position}) is out of range "
        f"(steps_per_epoch {self.steps_per_epoch})"
      )
    self._epoch, self._position = epoch, position
    self._schedule = self._epoch_schedule(epoch)

  # ----- batches -----

  def __iter__(self) -> "BatchIterator":
    """The iterator itself."""
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    """This host's slice of the next global batch; advances the position (and the epoch at its end)."""
    buckets_S, rows_SxG = self._schedule
    bucket = int(buckets_S[self._position])
    lo = self.process_index * self.batch_size
    batch = self._make_batch(rows_SxG[self._position, lo : lo + self.batch_size], *self.padded_shapes[bucket])
    self._position += 1
    if self._position == self.steps_per_epoch:
      self._epoch += 1
      self._position = 0
      self._schedule = self._epoch_schedule(self._epoch)
    return batch

  def _make_batch(self, lines_B: np.ndarray, t: int, u: int) -> dict[str, np.ndarray]:
    """Lines `lines_B` (indices into the kept lines) and their texts in the layout of `pad_batch`."""
    lines = [self._points[s : s + n] for s, n in zip(self._starts[lines_B], self._lengths[lines_B])]
    if self.augment is not None:
      rng = np.random.default_rng([self.seed, self._epoch, self._position, self.process_index, 0xA06])
      lines = [self.augment(line, rng) for line in lines]
    ids = [self._chars[s : s + n] for s, n in zip(self._text_starts[lines_B], self._text_lengths[lines_B])]
    return pad_batch(lines, ids, len(lines_B), t, u)
