"""Tests of handwriting_jax.data.batches.BatchIterator: shapes, shifting, masks, coverage, resuming, hosts."""

import collections
import io

import chex
import numpy as np
import pytest

from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.data.batches import BatchIterator

CHARS = "abcdefgh "


def make_corpus(num_lines: int = 53, seed: int = 0, max_len: int = 300):
  """Random lines of 3..max_len points whose first point holds the line's index, and random texts."""
  rng = np.random.default_rng(seed)
  strokes, texts = [], []
  for i in range(num_lines):
    t = int(rng.integers(3, max_len))
    line = rng.normal(size=(t, 3)).astype(np.float32)
    line[:, 2] = rng.random(t) < 0.1
    line[0, 0] = i  # identifies the line inside a batch
    strokes.append(line)
    texts.append("".join(rng.choice(list(CHARS), size=int(rng.integers(0, 30)))))
  return strokes, texts


def make_iterator(strokes=None, texts=None, **kwargs):
  """An iterator over `make_corpus()` with small defaults."""
  if strokes is None:
    strokes, texts = make_corpus()
  args = {"alphabet": Alphabet(CHARS), "batch_size": 8, "num_buckets": 3, "seed": 1}
  args.update(kwargs)
  return BatchIterator(strokes, texts, **args)


def line_ids(batch):
  """Index of each line of a batch (stored in its first target)."""
  return batch["targets"][:, 0, 0].astype(int).tolist()


def assert_batches_equal(a, b):
  """Two batches are identical, key by key."""
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_shapes_and_dtypes():
  """Every batch has the documented keys, shapes and dtypes and one of the declared padded shapes."""
  it = make_iterator()
  assert len(it.padded_shapes) <= 3
  for t, u in it.padded_shapes:
    assert t % 32 == 0 and u % 8 == 0 and u >= 8
  seen = set()
  for _ in range(2 * it.steps_per_epoch):
    batch = next(it)
    assert set(batch) == {"inputs", "targets", "mask", "chars", "char_mask"}
    t, u = batch["mask"].shape[1], batch["chars"].shape[1]
    assert (t, u) in it.padded_shapes
    seen.add((t, u))
    chex.assert_shape([batch["inputs"], batch["targets"]], (8, t, 3))
    chex.assert_shape(batch["mask"], (8, t))
    chex.assert_shape([batch["chars"], batch["char_mask"]], (8, u))
    chex.assert_type([batch["inputs"], batch["targets"], batch["mask"], batch["char_mask"]], np.float32)
    chex.assert_type(batch["chars"], np.int32)
  assert seen == set(it.padded_shapes)


def test_contents_shift_and_masks():
  """targets are the line, inputs the line shifted right with (0,0,1) first, masks match the lengths."""
  strokes, texts = make_corpus()
  alphabet = Alphabet(CHARS)
  it = make_iterator(strokes, texts)
  for _ in range(it.steps_per_epoch):
    batch = next(it)
    for row, i in enumerate(line_ids(batch)):
      line, n = strokes[i], len(strokes[i])
      targets, inputs, mask = batch["targets"][row], batch["inputs"][row], batch["mask"][row]
      np.testing.assert_array_equal(targets[:n], line)
      np.testing.assert_array_equal(targets[n:], 0)
      np.testing.assert_array_equal(inputs[0], [0, 0, 1])
      np.testing.assert_array_equal(inputs[1:n], line[:-1])
      np.testing.assert_array_equal(inputs[n:], 0)
      np.testing.assert_array_equal(mask, np.arange(len(mask)) < n)
      ids = alphabet.encode(texts[i])
      u = len(ids)
      np.testing.assert_array_equal(batch["chars"][row, :u], ids)
      np.testing.assert_array_equal(batch["chars"][row, u:], 0)
      np.testing.assert_array_equal(batch["char_mask"][row], np.arange(batch["chars"].shape[1]) < u)


def test_every_line_each_epoch_and_batches_single_bucket():
  """Each epoch shows every line, repeats only to fill a bucket's last batch, and a batch has one bucket."""
  strokes, texts = make_corpus()
  it = make_iterator(strokes, texts)
  bucket_t = {}
  for t, _ in it.padded_shapes:
    for i, line in enumerate(strokes):
      if len(line) <= t and i not in bucket_t:
        bucket_t[i] = t
  orders = []
  for _ in range(2):
    counts = collections.Counter()
    order = []
    for _ in range(it.steps_per_epoch):
      batch = next(it)
      ids = line_ids(batch)
      assert {bucket_t[i] for i in ids} == {batch["mask"].shape[1]}
      counts.update(ids)
      order += ids
    assert set(counts) == set(range(len(strokes)))
    assert sum(counts.values()) - len(strokes) < 8 * len(it.padded_shapes)
    orders.append(order)
  assert orders[0] != orders[1]  # epochs are reshuffled


def test_max_points_excludes_long_lines():
  """Lines longer than max_points never appear (they are dropped, not truncated); none fitting is an error."""
  strokes, texts = make_corpus()
  it = make_iterator(strokes, texts, max_points=100)
  kept = {i for i, s in enumerate(strokes) if len(s) <= 100}
  assert it.num_lines == len(kept) and it.num_excluded == len(strokes) - len(kept)
  seen = set()
  for _ in range(it.steps_per_epoch):
    seen.update(line_ids(next(it)))
  assert seen == kept
  assert max(t for t, _ in it.padded_shapes) <= 128
  with pytest.raises(ValueError, match="no line fits"):
    make_iterator(strokes, texts, max_points=2)


def test_unknown_characters_counted():
  """Texts with characters outside the alphabet are mapped to id 1 and counted."""
  strokes, texts = make_corpus(num_lines=10)
  texts = list(texts)
  texts[3] = "abxyx"
  it = make_iterator(strokes, texts, alphabet=Alphabet("abcdefgh "), batch_size=2)
  assert it.unknown_count == 3


def _state_through_npz(state):
  """Round-trip a state dict through np.savez / np.load, as a checkpoint would."""
  buf = io.BytesIO()
  np.savez(buf, **state)
  buf.seek(0)
  with np.load(buf) as f:
    return {k: f[k] for k in f.files}


@pytest.mark.parametrize("through_npz", [False, True])
def test_state_restore_mid_epoch_and_across_epoch(through_npz):
  """A restored iterator yields exactly the batches the original yields next, past an epoch boundary."""
  it = make_iterator()
  assert it.steps_per_epoch >= 4
  for _ in range(it.steps_per_epoch - 2):
    next(it)
  state = it.state()
  for v in state.values():
    assert isinstance(v, (int, np.ndarray)) and np.asarray(v).dtype.kind in "iu"
  if through_npz:
    state = _state_through_npz(state)
  expected = [next(it) for _ in range(5)]  # crosses into the next epoch
  assert it.epoch == 1
  resumed = make_iterator()
  resumed.restore(state)
  assert (resumed.epoch, resumed.position) == (0, it.steps_per_epoch - 2)
  for want in expected:
    assert_batches_equal(next(resumed), want)


def test_restore_rejects_other_data():
  """Restoring a state from an iterator over other lines or another seed is an error, not a silent mix."""
  state = make_iterator().state()
  with pytest.raises(ValueError, match="different"):
    make_iterator(seed=2).restore(state)
  with pytest.raises(ValueError, match="different"):
    make_iterator(max_points=100).restore(state)


def test_same_seed_same_batches_other_seed_differs():
  """The order is a function of the seed."""
  a, b, c = make_iterator(), make_iterator(), make_iterator(seed=7)
  la = [line_ids(next(a)) for _ in range(5)]
  assert la == [line_ids(next(b)) for _ in range(5)]
  assert la != [line_ids(next(c)) for _ in range(5)]


def test_process_slices_concatenate_to_global_batch():
  """The two hosts' slices, concatenated, are the single-process global batch."""
  whole = make_iterator()
  hosts = [make_iterator(process_index=p, process_count=2) for p in range(2)]
  for _ in range(whole.steps_per_epoch + 2):
    want = next(whole)
    parts = [next(h) for h in hosts]
    chex.assert_shape(parts[0]["inputs"], (4, None, 3))
    for k in want:
      np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), want[k], err_msg=k)


def test_bad_arguments():
  """Indivisible batch sizes and mismatched inputs are clear errors."""
  with pytest.raises(ValueError, match="batch_size 9 must be a positive multiple of process_count 2"):
    make_iterator(batch_size=9, process_count=2)
  with pytest.raises(ValueError, match="process_index"):
    make_iterator(process_index=2, process_count=2)
  strokes, texts = make_corpus(num_lines=5)
  with pytest.raises(ValueError, match="texts"):
    make_iterator(strokes, texts[:4])
  with pytest.raises(ValueError, match="shape"):
    make_iterator([np.zeros((4, 2), np.float32)], ["a"])
  with pytest.raises(ValueError, match="num_buckets"):
    make_iterator(num_buckets=0)


def test_small_buckets_merged_and_tiny_split_wraps():
  """A bucket never holds fewer lines than a batch unless the whole split does; then lines repeat."""
  strokes, texts = make_corpus(num_lines=20)
  it = make_iterator(strokes, texts, batch_size=8, num_buckets=10)
  assert len(it.padded_shapes) <= 20 // 8
  tiny = make_iterator(strokes[:3], texts[:3], batch_size=8)
  assert tiny.padded_shapes and tiny.steps_per_epoch == 1
  assert sorted(set(line_ids(next(tiny)))) == [0, 1, 2]


def test_state_moves_between_host_counts():
  """A state saved by one process layout restores into another (the global order does not depend on it)."""
  whole = make_iterator()
  for _ in range(3):
    next(whole)
  host = make_iterator(process_index=1, process_count=2)
  host.restore(whole.state())
  np.testing.assert_array_equal(next(host)["targets"], next(whole)["targets"][4:])


def test_oversampled_repeats_exactly_the_lines_holding_rare_characters():
  """Lines holding a listed character appear `factor` times, the others once, each with its own strokes; factor 1 or
  no characters leave the split as it was; a factor below 1 is refused."""
  from handwriting_jax.data.batches import oversampled

  texts = ["call 555", "hello", "Quiz", "plain text", "x 9"]
  strokes = [np.full((i + 2, 3), i, np.float32) for i in range(len(texts))]
  out_strokes, out_texts, count = oversampled(strokes, texts, "0123456789Q", 3)
  assert count == 3
  assert collections.Counter(out_texts) == {"call 555": 3, "hello": 1, "Quiz": 3, "plain text": 1, "x 9": 3}
  for s, t in zip(out_strokes, out_texts):
    assert s[0, 0] == texts.index(t)
  assert oversampled(strokes, texts, "0123456789", 1)[1:] == (texts, 0)
  assert oversampled(strokes, texts, "", 4)[1:] == (texts, 0)
  with pytest.raises(ValueError, match="at least 1"):
    oversampled(strokes, texts, "5", 0)
