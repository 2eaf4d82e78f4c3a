"""configs/*.py: every variant validates, the paper networks have the paper's size, bad fields name themselves."""

import glob
import importlib.util
import json
import os

import pytest
from flax import nnx

from handwriting_jax.config import defaults, validation
from handwriting_jax.errors import UserError
from handwriting_jax.model import networks
from handwriting_jax.training import checkpoint as ckpt_lib

_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
_VARIANTS = ("", "paper", "small", "iam_small", "iam_fast", "tiny")
_ONE_HOT = 59  # one-hot width of the synthesis window input (alphabet plus padding and unknown ids)


def _get_config(mode: str, variant: str):
  """`configs/{mode}.py:get_config(variant)`, loaded from the file as `--config=configs/{mode}.py:{variant}` does."""
  spec = importlib.util.spec_from_file_location(f"config_{mode}", os.path.join(_CONFIGS, f"{mode}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


def _lstm_params(n_in: int, hidden: int) -> int:
  """Peephole LSTM layer (eqs. 7-11): W_x [in, 4H], W_h [H, 4H], biases [4H], diagonal peepholes w_ci, w_cf, w_co."""
  return n_in * 4 * hidden + hidden * 4 * hidden + 4 * hidden + 3 * hidden


def _output_params(num_layers: int, hidden: int, mixtures: int) -> int:
  """Output layer of eq. 17 from every hidden layer: ŷ has 1 + 6M entries (e, π, μ₁, μ₂, σ₁, σ₂, ρ)."""
  return (num_layers * hidden + 1) * (1 + 6 * mixtures)


def prediction_param_count(num_layers: int, hidden: int, mixtures: int) -> int:
  """Section 4: layer 1 sees x; layer n > 1 sees x and h^{n-1} (skip connections)."""
  return (
    _lstm_params(3, hidden)
    + (num_layers - 1) * _lstm_params(3 + hidden, hidden)
    + _output_params(num_layers, hidden, mixtures)
  )


def synthesis_param_count(num_layers: int, hidden: int, mixtures: int, gaussians: int, one_hot: int) -> int:
  """Section 5: layer 1 sees x and w_{t-1}; layer n > 1 sees x, h^{n-1} and w_t; window layer (eq. 48) h¹ -> 3K."""
  return (
    _lstm_params(3 + one_hot, hidden)
    + (num_layers - 1) * _lstm_params(3 + hidden + one_hot, hidden)
    + (hidden + 1) * 3 * gaussians
    + _output_params(num_layers, hidden, mixtures)
  )


@pytest.mark.parametrize("mode", ["prediction", "synthesis"])
@pytest.mark.parametrize("variant", _VARIANTS)
def test_every_variant_validates(mode, variant):
  cfg = _get_config(mode, variant)
  assert cfg.model.mode == mode
  if cfg.data.source == "iam":  # IAM variants need the user's data folder, and say so
    with pytest.raises(UserError, match=r"config.data.iam_path"):
      validation.validate(cfg, device_count=1, process_count=1)
    cfg.data.iam_path = "/data/iam-ondb"
  validation.validate(cfg, device_count=1, process_count=1)


@pytest.mark.parametrize("mode", ["prediction", "synthesis"])
def test_paper_is_the_default_variant(mode):
  assert _get_config(mode, "").to_dict() == _get_config(mode, "paper").to_dict()
  with pytest.raises(ValueError, match="unknown config variant"):
    _get_config(mode, "huge")


def test_iam_fast_is_iam_small_with_small_batches_bf16_where_native_and_every_checkpoint_kept():
  """The clock-bound recipe changes only the batch, the word-piece stage, the length, the matmul precision and the
  checkpoint cadence of `iam_small`, and keeps every checkpoint it saves (so each can be judged)."""
  fast, small = (
    validation.leaves(_get_config("synthesis", "iam_fast")),
    validation.leaves(_get_config("synthesis", "iam_small")),
  )
  changed = {k: (small[k], fast[k]) for k in fast if fast[k] != small[k]}
  assert changed == {
    "model.compute_dtype": ("float32", "auto"),
    "data.batch_size": (32, 8),
    "data.pieces_until": (1500, 2300),
    "train.num_steps": (7000, 11500),
    "train.eval_every": (500, 1000),
    "train.checkpoint_every": (500, 1000),
    "train.keep_checkpoints": (10, 12),
  }
  saved = -(-fast["train.num_steps"] // fast["train.checkpoint_every"])  # the last step is saved too
  assert fast["train.keep_checkpoints"] >= saved


def test_paper_prediction_network_has_the_paper_size():
  cfg = _get_config("prediction", "paper")
  m = cfg.model
  assert (m.num_layers, m.hidden_size, m.num_mixtures, m.peepholes) == (3, 400, 20, True)
  assert cfg.data.batch_size == 32
  expected = prediction_param_count(m.num_layers, m.hidden_size, m.num_mixtures)
  assert expected == 3_368_121  # the formula's value, as quoted in section 4 ("3.4M weights")
  assert networks.count_params(networks.create_model(cfg, _ONE_HOT)) == expected


def test_paper_synthesis_network_has_the_paper_size():
  cfg = _get_config("synthesis", "paper")
  m = cfg.model
  assert (m.num_layers, m.hidden_size, m.num_mixtures, m.num_window_gaussians) == (3, 400, 20, 10)
  expected = synthesis_param_count(m.num_layers, m.hidden_size, m.num_mixtures, m.num_window_gaussians, _ONE_HOT)
  assert expected == 3_663_351
  assert networks.count_params(networks.create_model(cfg, _ONE_HOT)) == expected


def _abstract_param_count(cfg, one_hot: int) -> int:
  """Parameters of the network of `cfg`, built abstractly (shapes only: no initialisation is computed)."""
  return networks.count_params(nnx.eval_shape(lambda: networks.create_model(cfg, one_hot)))


def test_small_and_tiny_networks_follow_the_same_formulas():
  for variant in ("small", "tiny"):
    cfg = _get_config("synthesis", variant)
    m = cfg.model
    expected = synthesis_param_count(m.num_layers, m.hidden_size, m.num_mixtures, m.num_window_gaussians, 17)
    assert _abstract_param_count(cfg, 17) == expected, variant
    cfg = _get_config("prediction", variant)
    m = cfg.model
    expected = prediction_param_count(m.num_layers, m.hidden_size, m.num_mixtures)
    assert _abstract_param_count(cfg, 17) == expected, variant


def _set_negative_learning_rate(cfg):
  cfg.optim.learning_rate = -1e-3


def _set_unknown_window_variant(cfg):
  cfg.model.window_variant = "gaussian"


def _set_zero_hidden_size(cfg):
  cfg.model.hidden_size = 0


def _set_decreasing_curriculum(cfg):
  cfg.data.curriculum = ((600, 120), (400, 220))


def _set_iam_without_path(cfg):
  cfg.data.source = "iam"
  cfg.data.iam_path = ""


def _set_iam_path_without_iam_source(cfg):  # the path would be silently ignored
  cfg.data.source = "embedded"
  cfg.data.iam_path = "/data/iam-ondb"


def _set_unknown_optimizer(cfg):
  cfg.optim.name = "sgd"


def _set_unknown_stop_rule(cfg):
  cfg.sample.stop_rule = "never"


def _set_zero_downsample(cfg):
  cfg.data.downsample = 0


@pytest.mark.parametrize(
  "mutate, field",
  [
    (_set_unknown_stop_rule, "config.sample.stop_rule"),
    (_set_zero_downsample, "config.data.downsample"),
    (_set_negative_learning_rate, "config.optim.learning_rate"),
    (_set_unknown_window_variant, "config.model.window_variant"),
    (_set_zero_hidden_size, "config.model.hidden_size"),
    (_set_decreasing_curriculum, "config.data.curriculum[1]"),
    (_set_iam_without_path, "config.data.iam_path"),
    (_set_iam_path_without_iam_source, "config.data.iam_path"),
    (_set_unknown_optimizer, "config.optim.name"),
  ],
)
def test_bad_field_raises_config_error_naming_it(mutate, field):
  cfg = _get_config("synthesis", "small")
  validation.validate(cfg)
  mutate(cfg)
  with pytest.raises(validation.ConfigError) as info:
    validation.validate(cfg)
  assert str(info.value).startswith(field + ":"), str(info.value)
  assert isinstance(info.value, UserError)
  assert "\n" not in str(info.value)


def test_batch_not_divisible_by_devices_names_the_batch_size():
  cfg = _get_config("synthesis", "paper")
  validation.validate(cfg, device_count=8, process_count=2)  # 32 lines over 8 devices of 2 processes
  with pytest.raises(validation.ConfigError, match=r"^config\.data\.batch_size:.*32.*3 devices"):
    validation.validate(cfg, device_count=3)
  with pytest.raises(validation.ConfigError, match=r"^config\.data\.batch_size:.*5 processes"):
    validation.validate(cfg, device_count=1, process_count=5)


def test_with_defaults_fills_fields_added_since_a_checkpoint_was_written():
  saved = _get_config("synthesis", "small").to_dict()
  del saved["data"]["downsample"], saved["sample"]["stop_rule"]
  saved["model"]["hidden_size"] = 77
  cfg = defaults.with_defaults(saved)
  assert cfg.data.downsample == 1 and cfg.sample.stop_rule == "paper"  # the old behaviour
  assert cfg.model.hidden_size == 77 and cfg.optim.name == "adam"  # what was saved is kept
  assert "downsample" not in saved["data"]  # the saved dict is not changed


def test_with_defaults_drops_fields_removed_since_a_checkpoint_was_written():
  saved = _get_config("synthesis", "small").to_dict()
  saved["model"]["hoisted_backward"] = True  # removed: the hand-written backward is the only training path
  cfg = defaults.with_defaults(saved)
  assert "hoisted_backward" not in cfg.model and cfg.model.hidden_size == saved["model"]["hidden_size"]
  validation.validate(cfg)


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(defaults.__file__)))
_SHIPPED_METADATA = sorted(
  glob.glob(os.path.join(_PACKAGE, "pretrained", "*", "checkpoints", "*", "metadata", "metadata"))
)


def test_shipped_checkpoints_are_found():
  """The shipped writers' metadata files are where the next test looks (it would otherwise pass on nothing)."""
  assert len(_SHIPPED_METADATA) >= 2, _SHIPPED_METADATA


@pytest.mark.parametrize("path", _SHIPPED_METADATA)
def test_shipped_checkpoint_configs_load_as_valid_configs(path):
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)["config"]
  validation.validate(defaults.with_defaults(saved))


def test_old_checkpoint_config_stays_compatible_and_a_new_downsample_does_not():
  saved = _get_config("synthesis", "small").to_dict()
  del saved["data"]["downsample"]
  current = _get_config("synthesis", "small")
  ckpt_lib.check_compatible(saved, current, "/w")
  current.data.downsample = 2
  with pytest.raises(ckpt_lib.IncompatibleWorkdirError, match=r"config.data.downsample: checkpoint has 1"):
    ckpt_lib.check_compatible(saved, current, "/w")


def _every_valid_config():
  """(name, config) of every mode and variant, made valid (an IAM path where a variant needs one)."""
  for mode in ("prediction", "synthesis"):
    for variant in _VARIANTS[1:]:
      cfg = _get_config(mode, variant)
      if cfg.data.source == "iam":
        cfg.data.iam_path = "/data/iam-ondb"
      yield f"{mode}:{variant}", cfg


def test_every_field_of_every_variant_has_a_rule():
  for name, cfg in _every_valid_config():
    assert set(validation.leaves(cfg)) == set(validation.RULES), name


@pytest.mark.parametrize("field", sorted(validation.RULES))
def test_an_out_of_range_value_of_any_field_is_one_line_naming_it(field):
  import ml_collections

  rule = validation.RULES[field]
  for name, cfg in _every_valid_config():
    validation.validate(cfg)
    plain = cfg.to_dict()  # a plain dict: ConfigDict itself refuses a value of another type at assignment
    group = plain
    *parents, leaf = field.split(".")
    for part in parents:
      group = group[part]
    group[leaf] = rule.bad
    with pytest.raises(validation.ConfigError) as info:
      validation.validate(ml_collections.ConfigDict(plain))
    message = str(info.value)
    assert message.startswith(f"config.{field}:") and "\n" not in message, (name, message)


def test_an_unknown_or_missing_field_is_refused():
  import ml_collections

  cfg = _get_config("synthesis", "tiny").to_dict()
  cfg["train"]["evaluate_every"] = 3
  with pytest.raises(validation.ConfigError, match=r"^config.train.evaluate_every: is not a known config field"):
    validation.validate(ml_collections.ConfigDict(cfg))
  cfg = _get_config("synthesis", "tiny").to_dict()
  del cfg["optim"]["eps"]
  with pytest.raises(validation.ConfigError, match=r"^config.optim.eps: is missing"):
    validation.validate(ml_collections.ConfigDict(cfg))
