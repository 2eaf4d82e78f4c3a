"""Line shape: ink after the text and baseline jumps, on hand-built lines whose answer is known."""

import numpy as np
import pytest

from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.evaluation import line_shape


def _line(strokes: list[list[tuple[float, float]]]) -> np.ndarray:
  """Raw offsets [T, 3] of absolute strokes (y up)."""
  return strokes_lib.strokes_to_offsets([np.asarray(s, np.float64) for s in strokes])


def _word(x0: float, base: float) -> list[list[tuple[float, float]]]:
  """Three letter-like strokes 10 units tall from x0 on the baseline `base`."""
  return [[(x0 + 4 * i, base), (x0 + 4 * i + 1, base + 10), (x0 + 4 * i + 3, base)] for i in range(3)]


def _phi_peaking_at(line: np.ndarray, row: int, chars: int = 3) -> np.ndarray:
  """A window φ [T, U] whose weight on the last character peaks at `row`."""
  phi = np.zeros((len(line), chars))
  phi[:, -1] = np.exp(-0.5 * ((np.arange(len(line)) - row) / 2.0) ** 2)
  return phi


def test_a_mark_after_the_last_character_is_ink_after_the_text():
  word = _word(0, 0)
  clean = _line(word)
  last_start = 6  # rows of the first two strokes: 3 + 3
  assert not line_shape.ink_after_text(clean, _phi_peaking_at(clean, last_start + 1))
  hyphen = _line([*word, [(16, 5), (19, 5)]])  # a hyphen 5 units right of the last letter
  assert line_shape.ink_after_text(hyphen, _phi_peaking_at(hyphen, last_start + 1))
  # the same mark begun before the window reached the last character is part of the text
  assert not line_shape.ink_after_text(hyphen, _phi_peaking_at(hyphen, len(hyphen) - 1))


def test_a_letter_sized_stroke_just_after_the_text_is_ink_after_it():
  word = _word(0, 0)
  four = _line([*word, [(14, 10), (13, 3), (17, 3), (16, 10), (16, 0)]])  # a "4" 2 units right of the last letter
  assert line_shape.ink_after_text(four, _phi_peaking_at(four, 7))
  touching = _line([*word, [(11, 10), (10.5, 3), (14, 3), (13, 10), (13, 0)]])  # begun over the last letter
  assert not line_shape.ink_after_text(touching, _phi_peaking_at(touching, 7))


def test_a_late_stroke_over_the_last_letter_is_not_ink_after_the_text():
  dot = _line([*_word(0, 0), [(10, 14), (10.2, 14.2)]])  # the dot of a final i, above ink already written
  assert not line_shape.ink_after_text(dot, _phi_peaking_at(dot, 7))


def test_a_line_that_steps_up_mid_line_jumps_and_a_steadily_rising_one_does_not():
  xs = [0, 30, 60, 90, 120]  # words 11 units wide, 19 apart
  level = _line([s for x in xs for s in _word(x, 0)])
  centres, baselines, height = line_shape.word_baselines(level)
  assert len(centres) == 5 and baselines == pytest.approx([0] * 5) and height == pytest.approx(10)
  assert not line_shape.baseline_jump(level)
  rising = _line([s for i, x in enumerate(xs) for s in _word(x, 3 * i)])  # 3 units higher every word
  assert not line_shape.baseline_jump(rising)
  stepped = _line([s for i, x in enumerate(xs) for s in _word(x, 8 if i >= 3 else 0)])  # up 0.8 words mid-line
  assert line_shape.baseline_jump(stepped)
  with_hyphen = _line([*_word(0, 0), [(16, 5), (19, 5)], *_word(30, 0)])  # a mark has no baseline
  assert not line_shape.baseline_jump(with_hyphen)


def test_rates_count_the_flagged_lines():
  clean = _line(_word(0, 0))
  hyphen = _line([*_word(0, 0), [(16, 5), (19, 5)]])
  stepped = _line([s for i, x in enumerate([0, 30, 60, 90]) for s in _word(x, 8 if i >= 2 else 0)])
  phis = [_phi_peaking_at(clean, 7), _phi_peaking_at(hyphen, 7), _phi_peaking_at(stepped, len(stepped) - 2)]
  rates = line_shape.line_shape_rates([clean, hyphen, stepped], phis)
  assert rates["ink_after_text_lines"] == [1] and rates["baseline_jump_lines"] == [2]
  assert rates["ink_after_text"] == pytest.approx(1 / 3) and rates["baseline_jumps"] == pytest.approx(1 / 3)
