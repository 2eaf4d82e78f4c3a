"""Legibility of written lines: render each line as an image, read it back with tesseract, score CER and WER.

A relative measure, but the one users feel: it separates a model that writes from one that scribbles. The protocol
(the same as the figures quoted in docs/evaluation.md for other implementations): pen offsets → absolute points, y
flipped to image coordinates; black round-capped strokes 3 px wide on white, scaled so the line's height is 105 px,
20 px margin; tesseract `-l eng --psm 13` (a raw line), falling back to `--psm 7` and then `--psm 6` when it reads
nothing; the character error rate is the Levenshtein distance over the length of the intended text, case-sensitive,
summed over lines (so long lines weigh more); the word error rate likewise over words.

tesseract is Debian's `tesseract-ocr` package, called as a subprocess (stdin PNG, stdout text).
"""

import collections
import concurrent.futures
import dataclasses
import io
import os
import shutil
import subprocess
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from rapidfuzz.distance import Levenshtein

from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.errors import UserError

LINE_HEIGHT_PX = 105
MARGIN_PX = 20
STROKE_PX = 3
PAGE_SEGMENTATION_MODES = (13, 7, 6)  # raw line first; a single text line; a block
READ_TIMEOUT_S = 60.0  # one read of one line (it takes well under a second): longer means tesseract hangs
_MAX_WIDTH_PX = 8000  # a scribble that runs off sideways is clipped to this, not rendered at any size


class TesseractMissingError(UserError, FileNotFoundError):
  """No `tesseract` binary (or its English data) on this machine."""


class TesseractFailedError(UserError, RuntimeError):
  """tesseract ran but failed (a non-zero exit) or hung on a line: no legibility figure can be trusted."""


@dataclasses.dataclass(frozen=True)
class LineScore:
  """One line read back: what it should say, what tesseract read, and its edit distances."""

  text: str
  read: str
  char_errors: int
  word_errors: int

  @property
  def cer(self) -> float:
    """Character error rate of this line."""
    return self.char_errors / max(len(self.text), 1)


def check_tesseract(binary: str = "tesseract") -> str:
  """Path of the tesseract binary with English data; TesseractMissingError (one line, naming the package)."""
  path = shutil.which(binary)
  if path is None:
    raise TesseractMissingError(
      f"legibility needs the OCR engine tesseract, and {binary!r} is not on PATH: install "
      "the Debian package tesseract-ocr (apt-get install tesseract-ocr)"
    )
  try:
    langs = subprocess.run([path, "--list-langs"], capture_output=True, text=True, timeout=60, check=False).stdout
  except (OSError, subprocess.SubprocessError) as e:
    raise TesseractMissingError(f"{path} does not run ({e}): reinstall the Debian package tesseract-ocr") from e
  if "eng" not in langs.split():
    raise TesseractMissingError(
      f"{path} has no English data ('eng' not in --list-langs): install the Debian package tesseract-ocr-eng"
    )
  return path


def render_line(
  line_Tx3: np.ndarray, height_px: int = LINE_HEIGHT_PX, margin_px: int = MARGIN_PX, stroke_px: int = STROKE_PX
) -> Image.Image:
  """A de-normalised line of offsets (y up) as a grayscale image: black strokes on white, height `height_px`."""
  line = np.asarray(line_Tx3, np.float64)
  if line.ndim != 2 or line.shape[1] != 3 or not np.all(np.isfinite(line)):
    raise ValueError(f"a line must be finite offsets [T, 3], got shape {line.shape}")
  points = strokes_lib.offsets_to_points(line)
  xy = points[:, :2] * np.array([1.0, -1.0])  # y down, as in an image
  if len(xy) == 0:
    return Image.new("L", (2 * margin_px + 1, height_px + 2 * margin_px), 255)
  lo, hi = xy.min(axis=0), xy.max(axis=0)
  scale = height_px / max(hi[1] - lo[1], 1e-6)
  px = (xy - lo) * scale + margin_px
  width = int(min(np.ceil((hi[0] - lo[0]) * scale) + 2 * margin_px + 1, _MAX_WIDTH_PX))
  image = Image.new("L", (width, height_px + 2 * margin_px + 1), 255)
  pen = ImageDraw.Draw(image)
  r = stroke_px / 2.0
  for stroke in strokes_lib.points_to_strokes(np.concatenate([px, points[:, 2:]], axis=1)):
    coords = [tuple(p) for p in stroke[:, :2]]
    if len(coords) > 1:
      pen.line(coords, fill=0, width=stroke_px, joint="curve")
    for x, y in (coords[0], coords[-1]) if len(coords) > 1 else coords:  # round caps (and dots)
      pen.ellipse((x - r, y - r, x + r, y + r), fill=0)
  return image


def read_image(image: Image.Image, tesseract: str = "tesseract", timeout_s: float = READ_TIMEOUT_S) -> str:
  """The text tesseract reads in `image`: --psm 13, then 7, then 6 while it reads nothing; one line, stripped.
  TesseractFailedError when it exits with an error or takes longer than `timeout_s` (a read of nothing is "", a
  failed read is never counted as an unreadable line)."""
  buf = io.BytesIO()
  image.save(buf, format="PNG")
  for psm in PAGE_SEGMENTATION_MODES:
    try:
      out = subprocess.run(
        [tesseract, "stdin", "stdout", "-l", "eng", "--psm", str(psm)],
        input=buf.getvalue(),
        capture_output=True,
        timeout=timeout_s,
        check=False,
      )
    except FileNotFoundError as e:
      raise TesseractMissingError(f"tesseract vanished ({e}): install the Debian package tesseract-ocr") from e
    except subprocess.TimeoutExpired:
      raise TesseractFailedError(
        f"{tesseract} read nothing within {timeout_s:g} s (it hangs); check it with: {tesseract} --version"
      ) from None
    if out.returncode != 0:
      reason = (out.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
      raise TesseractFailedError(f"{tesseract} failed on a line (exit status {out.returncode}: {reason[:200]})")
    text = " ".join(out.stdout.decode("utf-8", "replace").split())
    if text:
      return text
  return ""


def score(text: str, read: str) -> LineScore:
  """Edit distances of what was read against the intended text: characters (case-sensitive) and words."""
  return LineScore(
    text=text,
    read=read,
    char_errors=Levenshtein.distance(text, read),
    word_errors=Levenshtein.distance(text.split(), read.split()),
  )


def error_rates(scores: Sequence[LineScore]) -> dict[str, float]:
  """CER and WER summed over lines (errors over reference length), and the mean and worst line CER."""
  chars = sum(len(s.text) for s in scores)
  words = sum(len(s.text.split()) for s in scores)
  line_cers = [s.cer for s in scores] or [float("nan")]
  return {
    "cer": sum(s.char_errors for s in scores) / max(chars, 1),
    "wer": sum(s.word_errors for s in scores) / max(words, 1),
    "mean_line_cer": float(np.mean(line_cers)),
    "worst_line_cer": float(np.max(line_cers)),
  }


CHAR_CLASSES = ("lower", "upper", "digit", "punct", "space")


def char_class(c: str) -> str:
  """The class of one character (`CHAR_CLASSES`): what the per-class error table groups by."""
  if c.isspace():
    return "space"
  if c.isdigit():
    return "digit"
  if c.isalpha():
    return "upper" if c.isupper() else "lower"
  return "punct"


def class_errors(scores: Sequence[LineScore], top: int = 15) -> dict:
  """Which characters are misread as what: per class of the intended character (`char_class`), its count and how
  many were substituted or dropped (from the edit operations of each line's alignment), the insertions (attributed
  to no intended character), and the `top` most frequent confusions as (intended, read, count); "" is a drop."""
  counts = collections.Counter()
  errors = collections.Counter()
  confusions = collections.Counter()
  inserted = 0
  for s in scores:
    counts.update(char_class(c) for c in s.text)
    for op in Levenshtein.editops(s.text, s.read):
      if op.tag == "insert":
        inserted += 1
        continue
      want = s.text[op.src_pos]
      errors[char_class(want)] += 1
      confusions[(want, s.read[op.dest_pos] if op.tag == "replace" else "")] += 1
  return {
    "classes": {
      k: {"chars": counts[k], "errors": errors[k], "rate": errors[k] / counts[k] if counts[k] else None}
      for k in CHAR_CLASSES
    },
    "inserted": inserted,
    "confusions": [[a, b, n] for (a, b), n in confusions.most_common(top)],
  }


def read_lines(
  lines: Sequence[np.ndarray],
  texts: Sequence[str],
  image_paths: Sequence[str] | None = None,
  tesseract: str | None = None,
  workers: int | None = None,
) -> list[LineScore]:
  """Render every line, read it back (in parallel subprocesses) and score it against its text; the images are
  saved as PNG at `image_paths` when given."""
  if len(lines) != len(texts) or (image_paths is not None and len(image_paths) != len(lines)):
    raise ValueError(
      f"got {len(lines)} lines, {len(texts)} texts and {'no' if image_paths is None else len(image_paths)} image paths"
    )
  binary = tesseract or check_tesseract()

  def one(i: int) -> LineScore:
    image = render_line(lines[i])
    if image_paths is not None:
      os.makedirs(os.path.dirname(os.path.abspath(image_paths[i])), exist_ok=True)
      image.save(image_paths[i])
    return score(texts[i], read_image(image, binary))

  with concurrent.futures.ThreadPoolExecutor(workers or max(1, min(4, os.cpu_count() or 1))) as pool:
    return list(pool.map(one, range(len(lines))))
