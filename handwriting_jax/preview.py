"""Draw training lines with their text, to look at the data before training on it.

  python -m handwriting_jax.preview --out=lines.png --num_lines=16
  python -m handwriting_jax.preview --out=lines.png --config=configs/synthesis.py:small
  python -m handwriting_jax.preview --out=iam.svg --config.data.source=iam --config.data.iam_path=DIR

Loads the data exactly as training does (`dataset.load_dataset(config.data)`: embedded Hershey corpus or
IAM-OnDB, preprocessing, normalisation), undoes the normalisation and writes a PNG sheet (one row per line,
its text as a caption). When `--out` ends with `.svg`, writes the SVG page and a PNG of the same name beside
it. `--color_strokes` colours each stroke, which shows where the pen is lifted (eos).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from handwriting_jax import cli
from handwriting_jax.config import defaults
from handwriting_jax.data import draw

# configs/ is top level in the repository, not part of the package: <repo>/configs/synthesis.py.
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synthesis.py"


def fallback_config() -> ml_collections.ConfigDict:
  """`defaults.data_config()` as `config.data`, for an installed package without the configs/ folder."""
  c = ml_collections.ConfigDict()
  c.data = defaults.data_config()
  return c


def pick_lines(
  dataset, split: str = "train", num_lines: int = 16, start: int = 0, shuffle_seed: int = -1
) -> tuple[list[np.ndarray], list[str], list[int]]:
  """(de-normalised lines, texts, indices) from `dataset.<split>`: `num_lines` from `start`, or a random
  sample of them (sorted) when `shuffle_seed >= 0`."""
  if split not in ("train", "valid"):
    raise ValueError(f"split: expected 'train' or 'valid', got {split!r}")
  if num_lines < 1:
    raise ValueError(f"num_lines: must be >= 1, got {num_lines}")
  part = getattr(dataset, split)
  n = len(part.strokes)
  if n == 0:
    raise ValueError(f"the {split} split is empty")
  if shuffle_seed >= 0:
    idx = np.sort(np.random.default_rng(shuffle_seed).choice(n, size=min(num_lines, n), replace=False))
  else:
    if not 0 <= start < n:
      raise ValueError(f"start: {start} is outside the {split} split (0..{n - 1})")
    idx = np.arange(start, min(start + num_lines, n))
  lines = [np.asarray(dataset.stats.denormalise(part.strokes[i]), np.float32) for i in idx]
  return lines, [part.texts[i] for i in idx], [int(i) for i in idx]


def write_preview(
  lines: Sequence[np.ndarray],
  texts: Sequence[str],
  out: str | os.PathLike,
  color_strokes: bool = False,
  labels: Sequence[object] | None = None,
) -> list[str]:
  """Write the PNG sheet (and the SVG page if `out` ends with .svg); return the paths written."""
  out = str(out)
  written = []
  if out.lower().endswith(".svg"):
    draw.lines_to_svg(lines, out)
    written.append(out)
    out = out[:-4] + ".png"
  elif not out.lower().endswith(".png"):
    raise ValueError(f"--out: {out} must end with .png or .svg")
  draw.save_lines_png(lines, texts, out, color_strokes=color_strokes, labels=labels)
  written.append(out)
  return written


def run(
  config: ml_collections.ConfigDict,
  out: str,
  num_lines: int = 16,
  split: str = "train",
  start: int = 0,
  shuffle_seed: int = -1,
  color_strokes: bool = False,
) -> list[str]:
  """The command line as a function: load `config.data`, draw the chosen lines; returns the paths written."""
  # Imported here so that the drawing tests do not depend on the data pipeline (nor on JAX, which validation needs).
  from handwriting_jax.config import validation
  from handwriting_jax.data import dataset as dataset_lib

  if "data" not in config:
    raise ValueError("--config: the config has no `data` group")
  validation.validate_data(config.data)
  ds = dataset_lib.load_dataset(config.data)
  lines, texts, idx = pick_lines(ds, split, num_lines, start, shuffle_seed)
  written = write_preview(lines, texts, out, color_strokes, labels=[f"{split}[{i}]" for i in idx])
  for path in written:
    logging.info("wrote %d %s lines to %s", len(lines), split, path)
  return written


FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so importing this module defines none)."""
  flags.DEFINE_string("out", "lines.png", "Output file: .png, or .svg (a .png is written beside it).")
  flags.DEFINE_integer("num_lines", 16, "Number of lines to draw.")
  flags.DEFINE_enum("split", "train", ["train", "valid"], "Which split to draw from.")
  flags.DEFINE_integer("start", 0, "Index of the first line drawn.")
  flags.DEFINE_integer("shuffle_seed", -1, "If >= 0, draw a random sample of lines with this seed instead.")
  flags.DEFINE_bool("color_strokes", False, "Give each stroke its own colour (shows the pen lifts).")
  if DEFAULT_CONFIG.is_file():
    config_flags.DEFINE_config_file(
      "config", default=str(DEFAULT_CONFIG), help_string="Config file (only config.data is used)."
    )
  else:  # installed without the repository: the data defaults, still overridable as --config.data.x=v
    config_flags.DEFINE_config_dict("config", fallback_config(), help_string="Data config (configs/ not found).")


def main(argv: Sequence[str]) -> None:
  """Entry point: draw the lines chosen by the flags."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # the paths written are printed below
  with cli.one_line_errors(ValueError):  # run() checks its arguments with ValueErrors naming the flag
    paths = run(
      FLAGS.config, FLAGS.out, FLAGS.num_lines, FLAGS.split, FLAGS.start, FLAGS.shuffle_seed, FLAGS.color_strokes
    )
  for path in paths:
    print(f"wrote {path}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
