"""Word pieces: cutting lines at the pen-up gaps between words, and the training stage that uses them."""

import numpy as np
import pytest

from configs import synthesis as synthesis_config
from handwriting_jax.config import validation
from handwriting_jax.data import dataset as dataset_lib
from handwriting_jax.data import pieces
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.errors import ConfigError
from handwriting_jax.training import loop as train

IDENTITY = strokes_lib.NormStats(mean=np.zeros(2, np.float32), std=np.ones(2, np.float32))


def _word(x0: float, width: float, strokes: int = 1) -> list[np.ndarray]:
  """`strokes` side-by-side zig-zag strokes covering [x0, x0 + width]."""
  out = []
  w = width / strokes
  for k in range(strokes):
    xs = np.linspace(x0 + k * w, x0 + (k + 0.8) * w, 6)
    out.append(np.stack([xs, np.tile([0.0, 5.0], 3)], axis=1))
  return out


def _line(words: list[list[np.ndarray]]) -> np.ndarray:
  return strokes_lib.strokes_to_offsets([s for w in words for s in w])


def test_written_words_join_punctuation():
  assert pieces.written_words("Mr . Smith , he said .") == ["Mr .", "Smith ,", "he", "said ."]
  assert pieces.written_words('" Hello there') == ['" Hello', "there"]


def test_cuts_at_the_gaps_between_words():
  words = [_word(0, 20, 2), _word(30, 10), _word(50, 25, 3)]  # gaps of 10 and 10; inner gaps 2, 1.7
  line = _line(words)
  cuts = pieces.word_cuts(line, 3)
  assert cuts == [12, 18]  # first rows of the 3rd and 4th strokes
  pts = strokes_lib.offsets_to_points(line)
  assert pts[cuts[0], 0] == pytest.approx(30) and pts[cuts[1], 0] == pytest.approx(50)


def test_unclear_gaps_and_reach_backs_are_not_cut():
  even = _line([_word(0, 10), _word(11, 10), _word(22, 10)])  # gaps of 1 between all strokes...
  assert pieces.word_cuts(even, 2) is None  # ...so which one is the word gap is not clear
  dot = np.array([[5.0, 12.0], [5.2, 12.1]])  # an i dot of word 1 drawn after word 2
  late = _line([_word(0, 10), _word(30, 10), [dot]])
  assert pieces.word_cuts(late, 2) is None
  assert pieces.word_cuts(_line([_word(0, 10)]), 2) is None  # fewer strokes than words
  assert pieces.word_cuts(_line([_word(0, 10)]), 1) == []


def test_split_into_pieces_covers_every_word_and_starts_at_the_origin():
  words = [_word(0, 20, 2), _word(30, 10), _word(50, 25, 3), _word(85, 10)]
  line = _line(words)
  text = "ab cd , ef gh"
  kept = _line([_word(0, 10), _word(11, 10), _word(22, 10)])  # two equal gaps: which one is the space?
  out_lines, out_texts, cut = pieces.split_into_pieces([line, kept], [text, "uv wx"], IDENTITY, 2, seed=3)
  assert cut == 1 and out_texts[-1] == "uv wx" and out_lines[-1] is kept
  cut_texts = out_texts[:-1]
  assert " ".join(cut_texts) == text and all(1 <= len(pieces.written_words(t)) <= 2 for t in cut_texts)
  assert sum(len(x) for x in out_lines[:-1]) == len(line)
  for piece in out_lines[:-1]:
    np.testing.assert_array_equal(piece[0, :2], line[0, :2])
    assert piece[-1, 2] == 1.0
  a, b, _ = pieces.split_into_pieces([line], [text], IDENTITY, 2, seed=3)
  assert b == cut_texts and all(np.array_equal(x, y) for x, y in zip(a, out_lines))


def test_pieces_stage_in_training_and_config_checks():
  cfg = synthesis_config.get_config("tiny")
  cfg.data.pieces_until = 5
  validation.validate(cfg)
  data = dataset_lib.load_dataset(cfg.data, progress=False)
  batches = train.CurriculumBatches(data.train, data.alphabet, cfg.data, data.stats)
  first = batches.next(0)
  assert batches.stage == 0 and "word pieces" in batches.describe()
  assert batches.iterator.num_lines > len(data.train.strokes)  # the Hershey lines cut cleanly into pieces
  batches.next(5)
  assert batches.stage == 1 and "lines up to" in batches.describe()
  assert first["inputs"].shape[0] == cfg.data.batch_size
  for field, value in (("pieces_until", -1), ("pieces_until", cfg.train.num_steps), ("piece_max_words", 0)):
    bad = synthesis_config.get_config("tiny")
    bad.data[field] = value
    with pytest.raises(ConfigError, match=f"config.data.{field}"):
      validation.validate(bad)
  bad = synthesis_config.get_config("tiny")
  bad.data.pieces_until, bad.data.curriculum = 10, ((8, 100),)
  with pytest.raises(ConfigError, match="curriculum"):
    validation.validate(bad)
