"""Tests of handwriting_jax.data.augment: the random slant and scale of training lines, and its use in batches."""

import numpy as np
import pytest
from test_batches import assert_batches_equal, line_ids, make_corpus, make_iterator

from handwriting_jax.config import defaults
from handwriting_jax.data import dataset as dataset_lib
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.data.augment import Augmentation
from handwriting_jax.training import loop

STATS = strokes_lib.NormStats(mean=np.array([0.8, -0.1], np.float32), std=np.array([2.5, 1.5], np.float32))


def random_line(seed: int = 0, n: int = 40) -> np.ndarray:
  """A normalised line [n, 3] with some pen lifts."""
  rng = np.random.default_rng(seed)
  line = rng.normal(size=(n, 3)).astype(np.float32)
  line[:, 2] = rng.random(n) < 0.2
  return line


def test_augmentation_is_the_affine_map_of_the_raw_offsets():
  """De-normalised, the augmented line is A times the raw line, A = diag(sx, sy) @ [[1, k], [0, 1]] with k and the
  log scales inside their ranges; pen lifts are kept; the input is not changed."""
  aug = Augmentation(slant=0.2, scale=0.1, stats=STATS)
  line = random_line()
  before = line.copy()
  for seed in range(20):
    out = aug(line, np.random.default_rng(seed))
    a = aug.matrix(np.random.default_rng(seed))  # the same draw
    sx, sy, k = a[0, 0], a[1, 1], a[0, 1] / a[0, 0]
    assert a[1, 0] == 0 and abs(k) <= 0.2 and abs(np.log(sx)) <= 0.1 and abs(np.log(sy)) <= 0.1
    raw = STATS.denormalise(line)[:, :2].astype(np.float64)
    want = np.stack([sx * (raw[:, 0] + k * raw[:, 1]), sy * raw[:, 1]], axis=1)
    np.testing.assert_allclose(STATS.denormalise(out)[:, :2], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[:, 2], line[:, 2])
  np.testing.assert_array_equal(line, before)


def test_a_vertical_stroke_is_slanted_and_zero_ranges_change_nothing():
  """A straight up-stroke (dx = 0) leans by k·dy after the shear; ranges of zero give the line back."""
  stats = strokes_lib.NormStats(mean=np.zeros(2, np.float32), std=np.ones(2, np.float32))
  up = np.zeros((10, 3), np.float32)
  up[:, 1] = 1.0
  out = Augmentation(slant=0.3, scale=0.0, stats=stats)(up, np.random.default_rng(3))
  lean = out[:, 0] / out[:, 1]
  assert np.all(lean == lean[0]) and 0 < abs(lean[0]) <= 0.3
  np.testing.assert_allclose(out[:, 1], 1.0)
  line = random_line(1)
  same = Augmentation(slant=0.0, scale=0.0, stats=STATS)(line, np.random.default_rng(0))
  np.testing.assert_allclose(same, line, atol=1e-6)
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    Augmentation(slant=1.5, scale=0.0, stats=STATS)


def test_augmented_batches_differ_per_step_and_a_restored_iterator_repeats_them():
  """With augmentation the offsets differ from the plain batches (same lines, same masks and pen lifts), the same line
  is drawn differently in another epoch, and a restored iterator yields exactly the same augmented batches."""
  strokes, texts = make_corpus()
  aug = Augmentation(slant=0.15, scale=0.1, stats=STATS)
  plain, augmented = make_iterator(strokes, texts), make_iterator(strokes, texts, augment=aug)
  for _ in range(3):
    p, a = next(plain), next(augmented)
    for key in ("mask", "chars", "char_mask"):
      np.testing.assert_array_equal(p[key], a[key])
    np.testing.assert_array_equal(p["targets"][..., 2], a["targets"][..., 2])
    np.testing.assert_array_equal(a["inputs"][:, 1:], a["targets"][:, :-1] * a["mask"][:, 1:, None])
    assert not np.allclose(p["targets"][..., :2], a["targets"][..., :2])
  state = augmented.state()
  want = [next(augmented) for _ in range(augmented.steps_per_epoch)]
  resumed = make_iterator(strokes, texts, augment=aug)
  resumed.restore(state)
  for batch in want:
    assert_batches_equal(next(resumed), batch)
  # The same line in two epochs (found through the plain iterator's line ids): another draw each time.
  plain, first = make_iterator(strokes, texts), make_iterator(strokes, texts, augment=aug)
  drawn = {}
  for _ in range(2):
    for _step in range(first.steps_per_epoch):
      ids, batch = line_ids(next(plain)), next(first)
      drawn.setdefault(ids[0], []).append(batch["targets"][0, : len(strokes[ids[0]]), :2])
  twice = [v for v in drawn.values() if len(v) == 2]
  assert twice and all(not np.allclose(a, b) for a, b in twice)


def test_training_batches_use_the_configured_augmentation():
  """`data.augment_slant` / `augment_scale` reach the training batches (normalised with the data's statistics), a
  config with both at 0 gives the plain batches, and a range of 1 or more is a config error naming the field."""
  from handwriting_jax.config import validation
  from handwriting_jax.errors import ConfigError

  cfg = defaults.apply_variant(defaults.base_config("synthesis"), "tiny")
  dataset = dataset_lib.load_dataset(cfg.data, progress=False)
  plain_batches = loop.CurriculumBatches(dataset.train, dataset.alphabet, cfg.data, dataset.stats)
  plain = plain_batches.next(0)
  assert plain_batches.iterator.augment is None
  cfg.data.augment_slant, cfg.data.augment_scale = 0.2, 0.1
  batches = loop.CurriculumBatches(dataset.train, dataset.alphabet, cfg.data, dataset.stats)
  augmented = batches.next(0)
  assert batches.iterator.augment.slant == 0.2 and batches.iterator.augment.scale == 0.1
  assert batches.iterator.augment.stats is dataset.stats
  np.testing.assert_array_equal(plain["mask"], augmented["mask"])
  assert not np.allclose(plain["targets"], augmented["targets"])
  cfg.data.augment_slant = 1.0
  with pytest.raises(ConfigError, match=r"config\.data\.augment_slant"):
    validation.validate(cfg)
