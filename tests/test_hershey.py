"""Tests for the embedded Hershey-font corpus (handwriting_jax/data/hershey.py, vocabulary.py)."""

import collections

import numpy as np
import pytest

from handwriting_jax.config import defaults
from handwriting_jax.data import hershey, vocabulary


def _small_cfg(seed: int = 0):
  """A quick corpus: 120 training lines by 6 writers, 40 validation lines."""
  cfg = defaults.data_config().embedded
  cfg.num_lines = 120
  cfg.valid_lines = 40
  cfg.num_writers = 6
  cfg.valid_writers = 3
  cfg.seed = seed
  return cfg


@pytest.fixture(scope="module")
def small_corpus():
  return hershey.generate_corpus(_small_cfg())


def _slant_deg(line_Tx3: np.ndarray) -> float:
  """Median slant of the near-vertical pen-down segments (degrees from vertical, positive = right)."""
  down = np.concatenate([[False], line_Tx3[:-1, 2] == 0])
  d = line_Tx3[down, :2]
  steep = np.abs(d[:, 1]) > 0.7 * np.abs(d[:, 0])
  d = d[steep] * np.sign(d[steep, 1:2])  # orient every segment upwards
  return float(np.degrees(np.median(np.arctan2(d[:, 0], d[:, 1]))))


def test_format(small_corpus):
  train, train_texts, valid, valid_texts = small_corpus
  assert len(train) == len(train_texts) == 120
  assert len(valid) == len(valid_texts) == 40
  for line_Tx3, text in zip(train + valid, train_texts + valid_texts):
    assert line_Tx3.dtype == np.float32
    assert line_Tx3.ndim == 2 and line_Tx3.shape[1] == 3
    assert np.all(np.isfinite(line_Tx3))
    assert set(np.unique(line_Tx3[:, 2])) <= {0.0, 1.0}
    assert line_Tx3[-1, 2] == 1.0
    ends = np.flatnonzero(line_Tx3[:, 2])
    assert np.diff(np.concatenate([[-1], ends])).min() >= 2, "every stroke has at least two points"
    assert set(text) <= set(hershey.ALPHABET) and text.strip() == text and text


def test_pen_down_steps_are_small(small_corpus):
  """No long jumps inside a stroke (joins and resampling stay pen-like); pen-up moves may be long."""
  x_height = defaults.data_config().embedded.x_height
  for line_Tx3 in small_corpus[0]:
    down = np.concatenate([[False], line_Tx3[:-1, 2] == 0])
    steps = np.hypot(line_Tx3[down, 0], line_Tx3[down, 1])
    assert steps.max() < 1.6 * x_height
    assert np.median(steps) < 0.6 * x_height


def test_points_per_char_follows_config():
  """Mean points per character is near cfg.points_per_char, and doubles when it doubles."""
  counts = []
  for ppc in (12.0, 24.0):
    cfg = _small_cfg()
    cfg.num_lines, cfg.valid_lines, cfg.points_per_char = 80, 0, ppc
    lines, texts, _, _ = hershey.generate_corpus(cfg)
    counts.append(sum(len(line) for line in lines) / sum(len(t) for t in texts))
    assert 0.8 * ppc < counts[-1] < 1.25 * ppc
  assert 1.7 < counts[1] / counts[0] < 2.3


def test_deterministic_from_seed(small_corpus):
  again = hershey.generate_corpus(_small_cfg(seed=0))
  for a, b in zip(small_corpus, again):
    assert len(a) == len(b)
    for x, y in zip(a, b):
      if isinstance(x, str):
        assert x == y
      else:
        np.testing.assert_array_equal(x, y)
  other = hershey.generate_corpus(_small_cfg(seed=1))
  assert other[1] != small_corpus[1]
  assert not all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(other[0], small_corpus[0]))


def test_texts_match_corpus(small_corpus):
  train_texts, valid_texts = hershey.corpus_texts(_small_cfg())
  assert train_texts == small_corpus[1]
  assert valid_texts == small_corpus[3]


def test_default_corpus_covers_alphabet_many_times():
  cfg = defaults.data_config().embedded
  train_texts, valid_texts = hershey.corpus_texts(cfg)
  assert len(train_texts) == cfg.num_lines and len(valid_texts) == cfg.valid_lines
  counts = collections.Counter("".join(train_texts))
  rare = {c: counts[c] for c in hershey.ALPHABET if counts[c] < 20}
  assert not rare, f"characters seen fewer than 20 times: {rare}"
  assert set(counts) <= set(hershey.ALPHABET)
  n_words = [len(t.split(" ")) for t in train_texts]
  assert min(n_words) >= cfg.min_words and max(n_words) <= cfg.max_words


def test_validation_has_unseen_sentences(small_corpus):
  _, train_texts, _, valid_texts = small_corpus
  unseen = [t for t in valid_texts if t not in set(train_texts)]
  assert len(unseen) >= 0.8 * len(valid_texts)
  assert len(set(valid_texts)) > 1


def test_writers_vary_in_slant():
  """The same text by different writers: measured slant follows each writer's slant and differs."""
  text = "the quick brown fox jumps over the lazy dog"
  fonts = ("scripts", "cursive")
  writers = [hershey.make_writer(np.random.default_rng([7, k]), fonts, 14.0) for k in range(10)]
  measured = np.array([_slant_deg(hershey.write_line(text, w, np.random.default_rng(0), 30.0)) for w in writers])
  true = np.degrees([w.slant for w in writers])
  assert np.ptp(measured) > 8.0
  assert np.corrcoef(measured, true)[0, 1] > 0.8


def test_writers_vary_in_size_and_spacing():
  text = "hello world"
  fonts = ("scripts",)
  widths, heights = [], []
  for k in range(8):
    w = hershey.make_writer(np.random.default_rng([3, k]), fonts, 14.0)
    p = np.cumsum(hershey.write_line(text, w, np.random.default_rng(0), 30.0)[:, :2], 0)
    widths.append(np.ptp(p[:, 0]))
    heights.append(np.ptp(p[:, 1]))
  assert max(widths) / min(widths) > 1.15
  assert max(heights) / min(heights) > 1.1


def test_words_are_joined_into_cursive_strokes(small_corpus):
  """Pen lifts are much fewer than the font's strokes: nearby letters are joined into cursive strokes."""
  _, texts, _, _ = small_corpus
  glyphs = hershey._font("scripts")
  font_strokes = sum(len(glyphs[c].strokes) for t in texts for c in t)
  pen_strokes = sum(int(line[:, 2].sum()) for line in small_corpus[0])
  assert pen_strokes < 0.6 * font_strokes


def test_vocabulary_sentences():
  rng = np.random.default_rng(0)
  for _ in range(200):
    s = vocabulary.random_sentence(rng, 2, 4)
    assert 2 <= len(s.split(" ")) <= 4
    assert set(s) <= set(vocabulary.ALPHABET)
  assert len(set(vocabulary.vocabulary())) > 300
  with pytest.raises(ValueError, match="min_words"):
    vocabulary.random_sentence(rng, 3, 2)


def test_font_list():
  """The fonts of data.embedded.fonts (validation refuses a bad list up front with this same parse)."""
  assert hershey.font_list(" scripts, cursive ") == ("scripts", "cursive")
  for bad in ("scripts,gothic", " , "):
    with pytest.raises(ValueError, match="Hershey fonts"):
      hershey.font_list(bad)
  cfg = _small_cfg()
  cfg.fonts = "scripts,gothic"
  with pytest.raises(ValueError, match="gothic"):
    hershey.generate_corpus(cfg)
