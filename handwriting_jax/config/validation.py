"""Up-front validation of a config: every field of every group has a rule, and every error names its field.

`RULES` maps each leaf field (dotted path) to what it must be; `validate` checks them all before anything runs (data,
compilation, a training step), then the rules that tie fields together. A field without a rule is an error too, so a
new config field cannot skip validation (tests/test_config.py walks the table with a bad value for each field).
`validate_data` checks the `config.data` group alone (for commands that only load data). This is the one place
that checks config values: the libraries that read them assume a validated config (their constructors keep only
plain ValueErrors for their own invariants), and take their lists of choices from the modules that define them.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import ml_collections

from handwriting_jax.config import defaults
from handwriting_jax.data import dataset, hershey, strokes
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.errors import ConfigError
from handwriting_jax.model import networks, precision
from handwriting_jax.model.sampling import RESAMPLE_MODES, STOP_RULES
from handwriting_jax.model.window import WINDOW_VARIANTS


@dataclasses.dataclass(frozen=True)
class Rule:
  """What one field must be: `ok(value)`, described as `expected`; `bad` is a value that breaks it (for tests)."""

  ok: Callable[[Any], bool]
  expected: str
  bad: Any


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


POSITIVE_INT = Rule(lambda v: _is_int(v) and v > 0, "a positive integer", 0)
NON_NEGATIVE_INT = Rule(lambda v: _is_int(v) and v >= 0, "an integer >= 0", -1)
ANY_INT = Rule(_is_int, "an integer", 1.5)
POSITIVE = Rule(lambda v: _is_number(v) and v > 0, "a finite number > 0", 0.0)
NON_NEGATIVE = Rule(lambda v: _is_number(v) and v >= 0, "a finite number >= 0", -1.0)
NUMBER = Rule(_is_number, "a finite number", float("nan"))
FRACTION = Rule(lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]", 1.5)
BELOW_ONE = Rule(lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)", 1.0)
BOOL = Rule(lambda v: isinstance(v, bool), "true or false", "yes")
TEXT = Rule(lambda v: isinstance(v, str), "a string", 3)


def one_of(*choices: str) -> Rule:
  """A field that takes one of `choices`."""
  return Rule(lambda v: v in choices, f"one of {choices}", "bogus")


def _odd_window(v) -> bool:
  return _is_int(v) and v >= 3 and v % 2 == 1


def _fonts(v) -> bool:
  try:
    return isinstance(v, str) and bool(hershey.font_list(v))
  except ValueError:
    return False


def _alphabet(v) -> bool:
  try:
    return isinstance(v, str) and (not v or bool(Alphabet(v)))
  except ValueError:
    return False


def _texts(v) -> bool:
  return isinstance(v, (tuple, list)) and all(isinstance(t, str) and t.strip() for t in v)


def _stages(v) -> bool:
  return isinstance(v, (tuple, list)) and all(
    isinstance(s, (tuple, list)) and len(s) == 2 and all(_is_int(x) and x > 0 for x in s) for s in v
  )


RULES: dict[str, Rule] = {
  "seed": ANY_INT,
  "parallel": one_of(*defaults.PARALLEL_MODES),
  "model.mode": one_of(*networks.MODES),
  "model.num_layers": POSITIVE_INT,
  "model.hidden_size": POSITIVE_INT,
  "model.num_mixtures": POSITIVE_INT,
  "model.num_window_gaussians": POSITIVE_INT,
  "model.window_variant": one_of(*WINDOW_VARIANTS),
  "model.peepholes": BOOL,
  "model.init_scale": POSITIVE,
  "model.forget_bias": NUMBER,
  "model.remat": BOOL,
  "model.remat_chunk": POSITIVE_INT,
  "model.scan_unroll": POSITIVE_INT,
  "model.compute_dtype": one_of(*precision.DTYPES),
  "model.lstm_clip": NON_NEGATIVE,
  "model.output_clip": NON_NEGATIVE,
  "data.source": one_of(*dataset.SOURCES),
  "data.iam_path": TEXT,
  "data.cache_dir": TEXT,
  "data.strict": BOOL,
  "data.max_points": POSITIVE_INT,
  "data.max_chars": POSITIVE_INT,
  "data.jump_threshold": POSITIVE,
  "data.jump_mode": one_of(*strokes.JUMP_MODES),
  "data.smoothing": one_of(*strokes.SMOOTHING_MODES),
  "data.savgol_window": Rule(_odd_window, "an odd integer >= 3", 6),
  "data.savgol_order": NON_NEGATIVE_INT,
  "data.align": BOOL,
  "data.normalise_mean": BOOL,
  "data.alphabet": Rule(_alphabet, "a string of distinct characters (empty: those of the training texts)", "aa"),
  "data.embedded.num_lines": POSITIVE_INT,
  "data.embedded.valid_lines": POSITIVE_INT,
  "data.embedded.seed": ANY_INT,
  "data.embedded.min_words": POSITIVE_INT,
  "data.embedded.max_words": POSITIVE_INT,
  "data.embedded.num_writers": POSITIVE_INT,
  "data.embedded.points_per_char": POSITIVE,
  "data.embedded.fonts": Rule(_fonts, f"a comma-separated list of fonts from {hershey.FONTS}", "scripts,gothic"),
  "data.embedded.x_height": POSITIVE,
  "data.embedded.valid_writers": NON_NEGATIVE_INT,
  "data.embedded.valid_new_writer_fraction": FRACTION,
  "data.batch_size": POSITIVE_INT,
  "data.num_buckets": POSITIVE_INT,
  "data.shuffle_seed": ANY_INT,
  "data.curriculum": Rule(_stages, "a list of (until_step, max_points) pairs of positive integers", ((10, 0),)),
  "data.pieces_until": NON_NEGATIVE_INT,
  "data.piece_max_words": POSITIVE_INT,
  "data.oversample_chars": TEXT,
  "data.oversample_factor": POSITIVE_INT,
  "data.synthetic_lines": NON_NEGATIVE_INT,
  "data.synthetic_until": NON_NEGATIVE_INT,
  "data.end_of_text": BOOL,
  "data.augment_slant": BELOW_ONE,
  "data.augment_scale": BELOW_ONE,
  "data.downsample": POSITIVE_INT,
  "optim.name": one_of(*defaults.OPTIMIZERS),
  "optim.learning_rate": POSITIVE,
  "optim.decay": BELOW_ONE,
  "optim.momentum": BELOW_ONE,
  "optim.eps": POSITIVE,
  "optim.b1": BELOW_ONE,
  "optim.b2": BELOW_ONE,
  "optim.schedule": one_of(*defaults.SCHEDULES),
  "optim.warmup_steps": NON_NEGATIVE_INT,
  "optim.final_fraction": FRACTION,
  "optim.clip_mode": one_of(*defaults.CLIP_MODES),
  "optim.max_grad_norm": POSITIVE,
  "optim.weight_noise": one_of(*defaults.WEIGHT_NOISE_MODES),
  "optim.weight_noise_std": POSITIVE,
  "train.num_steps": POSITIVE_INT,
  "train.log_every": POSITIVE_INT,
  "train.eval_every": POSITIVE_INT,
  "train.eval_batches": NON_NEGATIVE_INT,
  "train.checkpoint_every": POSITIVE_INT,
  "train.keep_checkpoints": POSITIVE_INT,
  "train.sample_every": NON_NEGATIVE_INT,
  "train.init_from": TEXT,
  "train.ema_decay": BELOW_ONE,
  "sample.bias": NON_NEGATIVE,
  "sample.texts": Rule(_texts, "a list of non-empty strings", ("ok", " ")),
  "sample.max_steps_per_char": POSITIVE,
  "sample.max_steps": POSITIVE_INT,
  "sample.stop_rule": one_of(*STOP_RULES),
  "sample.resample": one_of(*RESAMPLE_MODES),
}


def leaves(cfg: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  """Every leaf field of `cfg` by dotted path (nested groups walked)."""
  out = {}
  for key, value in cfg.items():
    path = f"{prefix}{key}"
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      out.update(leaves(value, path + "."))
    else:
      out[path] = value
  return out


def _require(ok: bool, field: str, message: str) -> None:
  if not ok:
    raise ConfigError(f"config.{field}: {message}")


def _check_fields(values: dict[str, Any], prefix: str = "") -> None:
  """Every field of `values` (leaves by dotted path) known and by its rule; every rule under `prefix` given."""
  for field in values:
    _require(field in RULES, field, "is not a known config field (see handwriting_jax/config/defaults.py)")
  for field, rule in RULES.items():
    if field.startswith(prefix):
      _require(field in values, field, "is missing (see handwriting_jax/config/defaults.py)")
      _require(rule.ok(values[field]), field, f"must be {rule.expected}, got {values[field]!r}")


def _check_data(data: ml_collections.ConfigDict) -> None:
  """The rules across fields of `config.data`."""
  _require(
    data.source != "iam" or bool(data.iam_path),
    "data.iam_path",
    "is empty but config.data.source is 'iam': give the folder holding the IAM-OnDB files",
  )
  _require(
    data.source == "iam" or not data.iam_path,
    "data.iam_path",
    f"is set ({data.iam_path!r}) but config.data.source is {data.source!r}, which would ignore it: add "
    "--config.data.source=iam to train on IAM-OnDB, or drop the path",
  )
  _require(
    data.source == "iam" or not data.synthetic_lines,
    "data.synthetic_lines",
    f"adds digit-rich lines to IAM-OnDB's training lines, but config.data.source is {data.source!r} (the embedded "
    "corpus has numbers of its own): set it to 0 or train on --config.data.source=iam",
  )
  _require(
    data.savgol_order < data.savgol_window,
    "data.savgol_order",
    f"must be below data.savgol_window ({data.savgol_window}), got {data.savgol_order}",
  )
  _require(
    data.embedded.min_words <= data.embedded.max_words,
    "data.embedded.min_words",
    f"must be <= data.embedded.max_words ({data.embedded.max_words}), got {data.embedded.min_words}",
  )


def validate_data(data_cfg: ml_collections.ConfigDict) -> None:
  """`validate` for the `config.data` group alone (what `data.dataset.load_dataset` reads)."""
  _check_fields(leaves(data_cfg, "data."), "data.")
  _check_data(data_cfg)


def validate(cfg: ml_collections.ConfigDict, device_count: int = 1, process_count: int = 1) -> None:
  """Raise ConfigError naming the first field that makes no sense for this run: each field by its rule, then the
  rules across fields."""
  _check_fields(leaves(cfg))
  _check_data(cfg.data)
  global_batch = cfg.data.batch_size
  _require(
    global_batch % device_count == 0,
    "data.batch_size",
    f"global batch {global_batch} does not divide over {device_count} devices",
  )
  _require(
    global_batch % process_count == 0,
    "data.batch_size",
    f"global batch {global_batch} does not divide over {process_count} processes",
  )
  _require(
    not cfg.data.synthetic_until or (cfg.data.synthetic_lines and cfg.data.synthetic_until < cfg.train.num_steps),
    "data.synthetic_until",
    f"is {cfg.data.synthetic_until}: the step at which the synthetic lines leave needs data.synthetic_lines > 0 (it "
    f"is {cfg.data.synthetic_lines}) and must come before train.num_steps ({cfg.train.num_steps})",
  )
  pieces_until = cfg.data.pieces_until
  _require(
    pieces_until < cfg.train.num_steps,
    "data.pieces_until",
    f"{pieces_until} leaves no step for whole lines (train.num_steps={cfg.train.num_steps})",
  )
  last = pieces_until - 1 if pieces_until else -1
  for i, stage in enumerate(cfg.data.curriculum):
    _require(
      stage[0] > last,
      f"data.curriculum[{i}]",
      f"stages are (until_step, max_points) with increasing steps (after data.pieces_until) and positive "
      f"lengths, got {tuple(stage)!r}",
    )
    last = stage[0]
