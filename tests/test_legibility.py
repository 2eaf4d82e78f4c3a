"""The legibility metric itself: rendering, the edit distances, and tesseract reading clean text well and scribbles
badly (so a CER figure means something). tesseract comes from Debian's tesseract-ocr, which .ci/run installs."""

import os

import numpy as np
import pytest
import test_write
from HersheyFonts import HersheyFonts

from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.evaluation import legibility

CLEAN_TEXTS = ("the quick brown fox jumps over", "please call me back after lunch", "send me the photos")


def _printed_line(text: str) -> np.ndarray:
  """`text` in Hershey's plain sans-serif font as pen offsets (y up): what a clean writer would produce."""
  font = HersheyFonts()
  font.load_default_font("futural")
  font.normalize_rendering(30)
  strokes, current = [], []
  for (x0, y0), (x1, y1) in font.lines_for_text(text):
    if current and np.allclose(current[-1], (x0, y0)):
      current.append((x1, y1))
    else:
      if current:
        strokes.append(np.array(current))
      current = [(x0, y0), (x1, y1)]
  strokes.append(np.array(current))
  return strokes_lib.strokes_to_offsets(strokes)


def test_edit_distances_and_rates():
  s = legibility.score("kitten sat", "sitting sat")  # kitten -> sitting: 3 edits; words: 1 substitution
  assert (s.char_errors, s.word_errors) == (3, 1)
  assert s.cer == pytest.approx(0.3)
  assert legibility.score("Abc", "abc").char_errors == 1  # case-sensitive
  rates = legibility.error_rates([s, legibility.score("ab cd", "ab cd")])
  assert rates["cer"] == pytest.approx(3 / 15) and rates["wer"] == pytest.approx(1 / 4)
  assert rates["worst_line_cer"] == pytest.approx(0.3) and rates["mean_line_cer"] == pytest.approx(0.15)


def test_render_line_scale_orientation_and_caps():
  # A stroke rising to the right from (0, 0) to (10, 10), then a one-point dot at (15, 0): y up in the data is up
  # in the image. Height 10 -> 105 px, so 10.5 px per unit, after a 20 px margin.
  line = np.array([[0, 0, 0], [10, 10, 1], [5, -10, 1]], np.float32)
  image = np.asarray(legibility.render_line(line))
  m, h = legibility.MARGIN_PX, legibility.LINE_HEIGHT_PX
  assert image.shape == (h + 2 * m + 1, int(np.ceil(15 * 10.5)) + 2 * m + 1)

  def inked(x, y):
    return (image[round(y) - 2 : round(y) + 3, round(x) - 2 : round(x) + 3] < 128).any()

  assert inked(m, m + h) and inked(m + 105, m)  # the stroke's start (bottom left) and end (top)
  assert inked(m + 15 * 10.5 - 1, m + h)  # the dot: a round cap on a one-point stroke
  assert (image[m : m + 20, m : m + 20] > 128).all()  # the top left stays white
  assert not inked(m + 60, m + 60 + 40)  # below the diagonal, away from the dot
  with pytest.raises(ValueError):
    legibility.render_line(np.array([[0, np.nan, 1]], np.float32))


def test_clean_text_reads_back_well_and_scrambled_strokes_badly():
  lines = [_printed_line(t) for t in CLEAN_TEXTS]
  clean = legibility.error_rates(legibility.read_lines(lines, CLEAN_TEXTS))
  assert clean["cer"] <= 0.1, clean
  rng = np.random.default_rng(0)
  scrambled = []
  for line in lines:
    x = line.copy()
    x[:, :2] = rng.permutation(x[:, :2])  # the same pen moves, in random order
    scrambled.append(x)
  bad = legibility.error_rates(legibility.read_lines(scrambled, CLEAN_TEXTS))
  assert bad["cer"] >= 0.6, bad


def test_images_are_saved(tmp_path):
  paths = [str(tmp_path / "a" / "line.png")]
  [s] = legibility.read_lines([_printed_line("fox")], ["fox"], paths)
  assert os.path.getsize(paths[0]) > 0 and s.text == "fox"


def test_missing_tesseract_is_one_line_naming_the_package(tmp_path):
  with pytest.raises(legibility.TesseractMissingError, match="tesseract-ocr"):
    legibility.check_tesseract("no-such-tesseract-binary")
  out = test_write.run_module("handwriting_jax.evaluate", path=str(tmp_path))
  assert out.returncode == 1
  assert out.stderr.strip().count("\n") == 0 and "tesseract-ocr" in out.stderr, out.stderr


def _fake_tesseract(folder, body: str) -> str:
  """An executable standing in for a broken tesseract: `body` is its shell script."""
  path = os.path.join(folder, "tesseract")
  with open(path, "w", encoding="utf-8") as f:
    f.write("#!/bin/sh\n" + body)
  os.chmod(path, 0o755)
  return path


@pytest.mark.parametrize(
  "body, message",
  [
    ("echo 'Error opening data file eng' >&2\nexit 1\n", r"failed on a line \(exit status 1: Error opening"),
    ("sleep 30\n", "read nothing within 0.5 s"),
  ],
)
def test_a_tesseract_that_fails_or_hangs_is_an_error_not_a_cer(tmp_path, body, message):
  """A failing read used to count as an unreadable line (CER 100%, exit 0) and a hanging one blocked for minutes."""
  fake = _fake_tesseract(str(tmp_path), body)
  with pytest.raises(legibility.TesseractFailedError, match=message):
    legibility.read_image(legibility.render_line(_printed_line("fox")), fake, timeout_s=0.5)


def test_class_errors_attribute_each_edit_to_the_intended_character():
  scores = [legibility.score("Call 555-0123", "Cal 555-a23"), legibility.score("Zoe 1987", "Zoe 1987.")]
  table = legibility.class_errors(scores)
  classes = table["classes"]
  assert classes["digit"] == {"chars": 11, "errors": 2, "rate": 2 / 11}  # 0 read as a, 1 dropped
  assert classes["lower"]["errors"] == 1 and classes["upper"]["errors"] == 0 and classes["punct"]["errors"] == 0
  assert table["inserted"] == 1  # the "." read after 1987
  assert sorted(map(tuple, table["confusions"])) == [("0", "a", 1), ("1", "", 1), ("l", "", 1)]
  assert sum(v["errors"] for v in classes.values()) + table["inserted"] == sum(s.char_errors for s in scores)
