"""Up-front validation of a config: every error names the offending field."""

import ml_collections

from handwriting_jax.errors import ConfigError
from handwriting_jax.model.window import WINDOW_VARIANTS


def _require(ok: bool, field: str, message: str) -> None:
  if not ok:
    raise ConfigError(f"config.{field}: {message}")


def _one_of(cfg: ml_collections.ConfigDict, field: str, choices: tuple[str, ...]) -> None:
  value = cfg
  for part in field.split("."):
    value = value[part]
  _require(value in choices, field, f"got {value!r}, expected one of {choices}")


def validate(cfg: ml_collections.ConfigDict, device_count: int = 1, process_count: int = 1) -> None:
  """Raise ConfigError naming the first field that makes no sense for this run."""
  _one_of(cfg, "model.mode", ("prediction", "synthesis"))
  _one_of(cfg, "model.window_variant", WINDOW_VARIANTS)
  _one_of(cfg, "model.compute_dtype", ("float32", "bfloat16", "float16"))
  _one_of(cfg, "optim.name", ("rmsprop", "adam"))
  _one_of(cfg, "optim.schedule", ("constant", "cosine"))
  _one_of(cfg, "optim.clip_mode", ("graves", "global_norm", "none"))
  _one_of(cfg, "parallel", ("jit", "pmap"))
  _one_of(cfg, "data.source", ("embedded", "iam"))
  _one_of(cfg, "sample.stop_rule", ("paper", "lift"))
  for field in ("model.num_layers", "model.hidden_size", "model.num_mixtures", "model.num_window_gaussians",
                "data.batch_size", "data.num_buckets", "train.num_steps", "train.log_every", "train.eval_every",
                "train.checkpoint_every", "train.keep_checkpoints", "model.scan_unroll", "model.remat_chunk",
                "data.downsample"):
    group, name = field.split(".")
    value = cfg[group][name]
    _require(isinstance(value, int) and value > 0, field, f"must be a positive integer, got {value!r}")
  _require(cfg.optim.learning_rate > 0, "optim.learning_rate", f"must be > 0, got {cfg.optim.learning_rate}")
  _require(cfg.model.init_scale > 0, "model.init_scale", f"must be > 0, got {cfg.model.init_scale}")
  _require(cfg.optim.max_grad_norm > 0, "optim.max_grad_norm", "must be > 0")
  _require(cfg.sample.bias >= 0, "sample.bias", f"must be >= 0, got {cfg.sample.bias}")
  _require(cfg.data.source != "iam" or bool(cfg.data.iam_path), "data.iam_path",
           "is empty but config.data.source is 'iam': give the folder holding the IAM-OnDB files")
  global_batch = cfg.data.batch_size
  _require(global_batch % device_count == 0, "data.batch_size",
           f"global batch {global_batch} does not divide over {device_count} devices")
  _require(global_batch % process_count == 0, "data.batch_size",
           f"global batch {global_batch} does not divide over {process_count} processes")
  pieces_until = cfg.data.pieces_until
  _require(isinstance(pieces_until, int) and pieces_until >= 0, "data.pieces_until",
           f"must be an integer >= 0 (0 = no word-piece stage), got {pieces_until!r}")
  _require(isinstance(cfg.data.piece_max_words, int) and cfg.data.piece_max_words > 0, "data.piece_max_words",
           f"must be a positive integer, got {cfg.data.piece_max_words!r}")
  _require(pieces_until < cfg.train.num_steps, "data.pieces_until",
           f"{pieces_until} leaves no step for whole lines (train.num_steps={cfg.train.num_steps})")
  last = pieces_until - 1 if pieces_until else -1
  for i, stage in enumerate(cfg.data.curriculum):
    _require(len(stage) == 2 and stage[0] > last and stage[1] > 0, f"data.curriculum[{i}]",
             f"stages are (until_step, max_points) with increasing steps (after data.pieces_until) and positive "
             f"lengths, got {stage!r}")
    last = stage[0]
