"""Tests of handwriting_jax.data.synthetic: digit-rich Hershey lines mixed into IAM-OnDB's training split."""

import numpy as np
import pytest
from test_dataset import iam_config, load

from handwriting_jax.config import defaults, validation
from handwriting_jax.data import cache as cache_lib
from handwriting_jax.data import hershey, strokes, synthetic, vocabulary
from handwriting_jax.errors import ConfigError
from handwriting_jax.training import loop

# Every character a synthetic text may hold, and more (the IAM fixture's own texts have no digits).
FULL_ALPHABET = hershey.ALPHABET


def test_numeric_sentences_are_digit_rich_with_every_capital_and_writable():
  rng = np.random.default_rng(0)
  texts = [vocabulary.numeric_sentence(rng) for _ in range(300)]
  assert all(any(c.isdigit() for c in t) for t in texts)
  assert set("".join(texts)) <= set(hershey.ALPHABET)
  assert set("".join(texts)) >= set("0123456789:-.,() ")  # times, phone numbers, prices, dates all come up
  assert set("".join(texts)) >= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")  # names and codes: the rare capitals too
  assert len(set(texts)) > 290


def test_numeric_text_respects_the_length_limit():
  rng = np.random.default_rng(1)
  for limit in (6, 12, 30):
    assert all(0 < len(synthetic.numeric_text(rng, limit)) <= limit for _ in range(50))


def test_scale_is_points_and_extent_per_character():
  split = cache_lib.CachedSplit(
    lines=[np.array([[1, 0, 0], [2, 5, 0], [3, 0, 1]], np.float32), np.array([[4, 1, 1]], np.float32)],
    texts=["ab", "cde"],
    ids=["x", "y"],
  )
  scale = synthetic.Scale.of(split, downsample=3)
  assert scale.points_per_char == pytest.approx(4 * 3 / 5)
  assert scale.extent_per_char == pytest.approx((1 + 2 + 3 + 4) / 5)
  with pytest.raises(ValueError, match="no training text"):
    synthetic.Scale.of(cache_lib.CachedSplit(lines=[], texts=[], ids=[]), 1)


@pytest.mark.parametrize("target", [synthetic.Scale(24.0, 180.0), synthetic.Scale(12.0, 40.0)])
def test_synthetic_lines_match_the_real_lines_scale_and_are_reproducible(target):
  data = defaults.data_config()
  data.downsample = 3
  settings = strokes.Preprocessing.from_config(data)
  split = synthetic.synthetic_split(40, target, settings, data.embedded)
  assert len(split.lines) >= 36 and split.ids[0].startswith("synthetic-w")
  got = synthetic.Scale.of(split, settings.downsample)
  assert got.extent_per_char == pytest.approx(target.extent_per_char, rel=1e-4)
  assert got.points_per_char == pytest.approx(target.points_per_char, rel=0.2)
  assert all(len(x) * settings.downsample <= settings.max_points + 3 * 40 for x in split.lines)
  again = synthetic.synthetic_split(40, target, settings, data.embedded)
  assert split.texts == again.texts
  for a, b in zip(split.lines, again.lines):
    np.testing.assert_array_equal(a, b)


def test_synthetic_lines_join_the_training_split_only(tmp_path):
  real = load(iam_config(tmp_path, alphabet=FULL_ALPHABET))
  mixed = load(iam_config(tmp_path, alphabet=FULL_ALPHABET, synthetic_lines=12))
  n = len(real.train)
  assert mixed.train.ids[:n] == real.train.ids and mixed.train.texts[:n] == real.train.texts
  assert len(mixed.train) - n == mixed.summary["synthetic_lines"] > 0
  assert all(i.startswith("synthetic-") for i in mixed.train.ids[n:])
  assert all(any(c.isdigit() for c in t) for t in mixed.train.texts[n:])
  assert mixed.valid.ids == real.valid.ids
  # The normalisation is the real lines' own, so the real lines are unchanged.
  np.testing.assert_array_equal(mixed.stats.std, real.stats.std)
  for a, b in zip(mixed.train.strokes[:n], real.train.strokes):
    np.testing.assert_array_equal(a, b)
  assert "synthetic" in mixed.summary["line"] and "synthetic" not in real.summary["line"]


def test_an_alphabet_without_digits_is_a_clear_error(tmp_path):
  with pytest.raises(ConfigError, match=r"config\.data\.synthetic_lines: the synthetic lines hold") as err:
    load(iam_config(tmp_path, alphabet="abcdefghijklmnopqrstuvwxyzLP ", synthetic_lines=5))
  assert "0123456789" in str(err.value)


@pytest.mark.parametrize("source,value,pattern", [("embedded", 10, "source is 'embedded'"), ("iam", -1, "must be")])
def test_synthetic_lines_field_is_checked(source, value, pattern):
  cfg = defaults.data_config()
  cfg.source = source
  cfg.iam_path = "/data/iam" if source == "iam" else ""
  cfg.synthetic_lines = value
  with pytest.raises(ConfigError, match=f"config.data.synthetic_lines.*{pattern}"):
    validation.validate_data(cfg)


def test_stages_are_cut_where_the_synthetic_lines_leave():
  pieces, short, full = (500, 800, True), (3000, 300, False), (None, 800, False)
  assert loop._split_stages([pieces, short, full], 0) == [(*pieces, True), (*short, True), (*full, True)]
  # At a stage's end: no new stage; inside one: that stage cut in two, the same lengths either side.
  assert loop._split_stages([pieces, short, full], 3000) == [(*pieces, True), (*short, True), (*full, False)]
  assert loop._split_stages([pieces, short, full], 400) == [
    (400, 800, True, True),
    (*pieces, False),
    (*short, False),
    (*full, False),
  ]
  assert loop._split_stages([full], 12000) == [(12000, 800, False, True), (*full, False)]


def test_synthetic_lines_leave_the_batches_at_synthetic_until(tmp_path):
  cfg = iam_config(tmp_path, alphabet=FULL_ALPHABET, synthetic_lines=12, synthetic_until=3, batch_size=2)
  cfg.num_buckets = 1
  data = load(cfg)
  num_synthetic = data.summary["synthetic_lines"]
  batches = loop.CurriculumBatches(data.train, data.alphabet, cfg, data.stats)
  batches.next(0)
  assert batches.iterator.num_lines == len(data.train) and batches.stage == 0
  batches.next(3)
  assert batches.iterator.num_lines == len(data.train) - num_synthetic and batches.stage == 1
  # From then on no batch holds a synthetic text (they all hold digits; the fixture's own texts none).
  digits = data.alphabet.encode("0123456789")
  assert not any(any(c.isdigit() for c in t) for t in data.train.texts[: len(data.train) - num_synthetic])
  for step in range(3, 3 + 2 * batches.iterator.steps_per_epoch):
    assert not np.isin(batches.next(step)["chars"], digits).any()


def test_the_eta_counts_the_lines_a_stage_will_draw_from(tmp_path):
  cfg = iam_config(tmp_path, alphabet=FULL_ALPHABET, synthetic_lines=12, synthetic_until=3, batch_size=2)
  cfg.num_buckets = 1
  data = load(cfg)
  batches = loop.CurriculumBatches(data.train, data.alphabet, cfg, data.stats)
  batches.next(0)
  before = batches._mean_length(1)  # the real-lines stage, priced before it starts
  batches.next(3)
  assert before == batches.iterator.mean_padded_length
  assert before != batches._mean_length(0)  # the synthetic lines' lengths differ, so this can tell


@pytest.mark.parametrize("lines,until,pattern", [(0, 5, "needs data.synthetic_lines > 0"), (10, 50, "before")])
def test_synthetic_until_is_checked(lines, until, pattern):
  cfg = defaults.base_config("synthesis")
  cfg.data.source, cfg.data.iam_path = "iam", "/data/iam"
  cfg.train.num_steps = 50
  cfg.data.synthetic_lines, cfg.data.synthetic_until = lines, until
  with pytest.raises(ConfigError, match=f"config.data.synthetic_until.*{pattern}"):
    validation.validate(cfg)
