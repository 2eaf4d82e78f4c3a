"""Flax NNX modules for the prediction (section 4) and synthesis (section 5) networks.

The modules hold parameters; the recurrences are the pure functions of `lstm.py`, `window.py` and `mdn.py`, each
written once as a `recurrent.Cell`. Two paths run them. Training (`__call__`, "How it runs fast" in the design):
every input projection that does not depend on the recurrence is one large matmul over the whole sequence; the
prediction network and layers >= 2 of the synthesis network run one `recurrent.layer_scan` (hand-written backward)
per layer; layer 1 and the window of the synthesis network share one. Sampling (`step`): the same cells one time
step at a time (`recurrent.step`). The plain-autodiff scans that the tests and the benchmark compare the fast path
with live in `reference.py`.
"""

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from handwriting_jax.model import lstm, mdn, precision, recurrent, window
from handwriting_jax.model.clipping import maybe_clip

MODES = ("prediction", "synthesis")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The network's settings, typed and frozen: what the NNX modules read (`config.model`, documented field by field
  in `config/defaults.py`), built from the ConfigDict once by `ModelConfig.of`."""

  mode: str
  num_layers: int
  hidden_size: int
  num_mixtures: int
  num_window_gaussians: int
  window_variant: str
  peepholes: bool
  init_scale: float
  forget_bias: float
  remat: bool
  remat_chunk: int
  scan_unroll: int
  compute_dtype: str
  lstm_clip: float
  output_clip: float

  @classmethod
  def of(cls, model_cfg: "ModelConfig | ml_collections.ConfigDict") -> "ModelConfig":
    """`model_cfg` (a `config.model` group, or already a ModelConfig) as a ModelConfig; ValueError naming the
    fields it lacks."""
    if isinstance(model_cfg, cls):
      return model_cfg
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in model_cfg]
    if missing:
      raise ValueError(f"config.model lacks {', '.join(missing)}")
    return cls(**{n: model_cfg[n] for n in names})


class NetworkState(NamedTuple):
  """Recurrent state of a whole network: one LSTMCarry per layer; window offsets κ [B, K] and last window
  w [B, A] (zero-sized for the prediction network)."""

  lstm: tuple[lstm.LSTMCarry, ...]
  kappa: jax.Array
  w: jax.Array


def _identity(h: jax.Array) -> jax.Array:
  """What a plain LSTM layer multiplies by W_h and by its output projection: h itself."""
  return h


def _lstm_keep(carry: lstm.LSTMCarry) -> jax.Array:
  """What an LSTM layer outputs over time (and saves under remat): h_t."""
  return carry.h


def _lstm_cell_step(clip, peep_3xH, consts, carry, z_Bx4H):
  """`recurrent.Cell.step` of a plain LSTM layer: eqs. 7-11 after the matmuls, no extra outputs."""
  del consts
  return lstm.lstm_cell(peep_3xH, carry, z_Bx4H, clip), None


def _synthesis_keep(carry) -> tuple[jax.Array, jax.Array, jax.Array]:
  """What layer 1 of the synthesis network and the window output over time (and save under remat): (h¹, κ, w)."""
  c1, kappa, w = carry
  return c1.h, kappa, w


def _synthesis_rec(kept) -> jax.Array:
  """What layer 1 of the synthesis network multiplies by [W_h; W_xw] each step: [h¹_{t-1}, w_{t-1}]."""
  h1, _, w_prev = kept
  return jnp.concatenate([h1, w_prev], axis=-1)


def _synthesis_out(kept) -> jax.Array:
  """What layer 1 of the synthesis network feeds to the output layer: h¹_t."""
  return kept[0]


def _synthesis_cell_step(clip, variant, compute_dtype, params, consts, carry, z_Bx4H):
  """`recurrent.Cell.step` of synthesis layer 1 and the window: h¹_t, then (κ_t, w_t), and (φ_t, α_t, β_t) as the
  step's extra outputs (eqs. 46-51)."""
  peep, w_window, b_window = params
  onehot, char_mask = consts
  c1, kappa, _ = carry
  c1 = lstm.lstm_cell(peep, c1, z_Bx4H, clip)
  abk = lstm.matmul(c1.h, w_window, compute_dtype) + b_window
  win = window.window_step(abk, kappa, onehot, char_mask, variant)
  return (c1, win.kappa, win.w), (win.phi, win.alpha, win.beta)


class LSTMLayer(nnx.Module):
  """Parameters of one peephole LSTM layer: W_x [in, 4H], W_h [H, 4H], b [4H], peepholes [3, H]."""

  def __init__(
    self, in_size: int, hidden: int, *, peepholes: bool, init_scale: float, forget_bias: float, rngs: nnx.Rngs
  ):
    init = jax.nn.initializers.normal(init_scale)
    self.w_x = nnx.Param(init(rngs.params(), (in_size, 4 * hidden), jnp.float32))
    self.w_h = nnx.Param(init(rngs.params(), (hidden, 4 * hidden), jnp.float32))
    self.b = nnx.Param(jnp.zeros((4 * hidden,), jnp.float32).at[hidden : 2 * hidden].set(forget_bias))
    self.peep = nnx.Param(init(rngs.params(), (3, hidden), jnp.float32)) if peepholes else None

  def peepholes(self) -> jax.Array | None:
    """Diagonal peephole weights (w_ci, w_cf, w_co), or None when disabled."""
    return None if self.peep is None else self.peep[...]


class Network(nnx.Module):
  """Shared parts: layers, output layer ŷ = b_y + Σ_n W_{hⁿy} hⁿ (eq. 17), static settings."""

  def __init__(self, cfg: ModelConfig, layer_inputs: list[int], *, rngs: nnx.Rngs):
    self.hidden = cfg.hidden_size
    self.num_layers = cfg.num_layers
    self.num_mixtures = cfg.num_mixtures
    self.remat = bool(cfg.remat)
    self.compute_dtype = precision.compute_dtype(cfg.compute_dtype)
    self.lstm_clip = cfg.lstm_clip if cfg.lstm_clip > 0 else None
    self.output_clip = cfg.output_clip if cfg.output_clip > 0 else None
    # Fast-path settings (see recurrent.py): scan unroll factor, time steps per chunk of the layer scans.
    self.unroll = int(cfg.scan_unroll)
    self.remat_chunk = int(cfg.remat_chunk)
    self.layers = nnx.List(
      [
        LSTMLayer(
          n_in,
          cfg.hidden_size,
          peepholes=cfg.peepholes,
          init_scale=cfg.init_scale,
          forget_bias=cfg.forget_bias,
          rngs=rngs,
        )
        for n_in in layer_inputs
      ]
    )
    init = jax.nn.initializers.normal(cfg.init_scale)
    self.w_y = nnx.Param(
      init(rngs.params(), (cfg.num_layers * cfg.hidden_size, mdn.output_size(cfg.num_mixtures)), jnp.float32)
    )
    self.b_y = nnx.Param(jnp.zeros((mdn.output_size(cfg.num_mixtures),), jnp.float32))

  def _w_out(self, n: int) -> jax.Array:
    """Layer n's share W_{hⁿy} [H, Y] of the output layer."""
    return self.w_y[...][n * self.hidden : (n + 1) * self.hidden]

  def _lstm_recurrence(self, n: int) -> tuple[recurrent.Cell, recurrent.LayerWeights]:
    """LSTM layer n as the one recurrence (eqs. 7-11) that both `_layer_scan` and `step` run."""
    layer = self.layers[n]
    weights = recurrent.LayerWeights(layer.w_x[...], layer.b[...], layer.w_h[...], layer.peepholes(), self._w_out(n))
    cell = recurrent.Cell(_identity, functools.partial(_lstm_cell_step, self.lstm_clip), _identity, _lstm_keep)
    return cell, weights

  def _layer_scan(
    self, n: int, carry: lstm.LSTMCarry, inputs_TxBxI: list[jax.Array]
  ) -> tuple[lstm.LSTMCarry, jax.Array, jax.Array]:
    """Layer n over the whole sequence: hoisted input projection of the input pieces (their concatenation is
    the layer input), then the recurrent scan; returns the final carry, h [T, B, H] and hⁿ W_{hⁿy} [T, B, Y]."""
    cell, weights = self._lstm_recurrence(n)
    h, _, y, final = recurrent.layer_scan(
      cell,
      weights,
      carry,
      inputs_TxBxI,
      compute_dtype=self.compute_dtype,
      remat=self.remat,
      chunk=self.remat_chunk,
      unroll=self.unroll,
    )
    return final, h, y

  def _output_sum(self, ys: list[jax.Array]) -> jax.Array:
    """ŷ = b_y + Σ_n hⁿ W_{hⁿy} from the layers' shares (made chunk by chunk inside the layer scans), with Graves
    output-derivative clipping when enabled."""
    y = self.b_y[...]
    for y_n in ys:
      y = y + y_n
    return maybe_clip(y, self.output_clip)

  def _output(self, hs: list[jax.Array]) -> jax.Array:
    """ŷ = b_y + Σ_n hⁿ W_{hⁿy} (one matmul per layer, no concatenated copy of the hidden states), with Graves
    output-derivative clipping when enabled."""
    w_y, y = self.w_y[...], self.b_y[...]
    for n, h in enumerate(hs):
      y = y + lstm.matmul(h, w_y[n * self.hidden : (n + 1) * self.hidden], self.compute_dtype)
    return maybe_clip(y, self.output_clip)

  def _step_layers(
    self, state: NetworkState, x_Bx3: jax.Array, first_h: jax.Array, extra: list[jax.Array]
  ) -> tuple[list[lstm.LSTMCarry], jax.Array]:
    """Layers >= 2 for one time step: layer n sees [x, h^{n-1}, *extra]; returns the carries and ŷ."""
    carries, hs = [], [first_h]
    for n in range(1, self.num_layers):
      carry, _ = recurrent.step(
        *self._lstm_recurrence(n), state.lstm[n], [x_Bx3, hs[-1], *extra], compute_dtype=self.compute_dtype
      )
      carries.append(carry)
      hs.append(carry.h)
    return carries, self._output(hs)


class PredictionNetwork(Network):
  """Handwriting prediction network (section 4): skip connections input->every layer, every layer->output."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    h = cfg.hidden_size
    super().__init__(cfg, [3] + [3 + h] * (cfg.num_layers - 1), rngs=rngs)

  def initial_state(self, batch: int, dtype=jnp.float32) -> NetworkState:
    """Zero state for `batch` lines."""
    carries = tuple(lstm.zero_carry(batch, self.hidden, dtype) for _ in range(self.num_layers))
    return NetworkState(carries, jnp.zeros((batch, 0), dtype), jnp.zeros((batch, 0), dtype))

  def __call__(
    self,
    inputs_BxTx3: jax.Array,
    chars_BxU=None,
    char_mask_BxU=None,
    state: NetworkState | None = None,
    time_major: bool = False,
  ) -> tuple[jax.Array, NetworkState, dict]:
    """Teacher-forced pass: returns ŷ [B, T, 6M+1] ([T, B, 6M+1] if `time_major`), the final state and an empty
    aux dict."""
    del chars_BxU, char_mask_BxU
    x = jnp.swapaxes(inputs_BxTx3, 0, 1)
    state = self.initial_state(x.shape[1], x.dtype) if state is None else state
    hs, ys, carries = [], [], []
    for n in range(self.num_layers):
      carry, h, y_n = self._layer_scan(n, state.lstm[n], [x] if n == 0 else [x, hs[-1]])
      hs.append(h)
      ys.append(y_n)
      carries.append(carry)
    y = self._output_sum(ys) if time_major else jnp.swapaxes(self._output_sum(ys), 0, 1)
    return y, NetworkState(tuple(carries), state.kappa, state.w), {}

  def step(
    self, state: NetworkState, x_Bx3: jax.Array, chars_onehot_BxUxA=None, char_mask_BxU=None
  ) -> tuple[NetworkState, jax.Array, dict]:
    """One time step (sampling): returns the new state, ŷ [B, 6M+1] and an empty aux dict."""
    del chars_onehot_BxUxA, char_mask_BxU
    c1, _ = recurrent.step(*self._lstm_recurrence(0), state.lstm[0], [x_Bx3], compute_dtype=self.compute_dtype)
    carries, y = self._step_layers(state, x_Bx3, c1.h, [])
    return NetworkState((c1, *carries), state.kappa, state.w), y, {}


class SynthesisNetwork(Network):
  """Handwriting synthesis network (section 5): window between layer 1 and the rest, fed back into layer 1."""

  def __init__(self, cfg: ModelConfig, alphabet_size: int, *, rngs: nnx.Rngs):
    h, a = cfg.hidden_size, alphabet_size
    super().__init__(cfg, [3 + a] + [3 + h + a] * (cfg.num_layers - 1), rngs=rngs)
    self.alphabet_size = alphabet_size
    self.num_gaussians = cfg.num_window_gaussians
    self.window_variant = cfg.window_variant
    init = jax.nn.initializers.normal(cfg.init_scale)
    self.w_window = nnx.Param(init(rngs.params(), (h, 3 * cfg.num_window_gaussians), jnp.float32))
    self.b_window = nnx.Param(jnp.zeros((3 * cfg.num_window_gaussians,), jnp.float32))

  def initial_state(self, batch: int, dtype=jnp.float32) -> NetworkState:
    """Zero state for `batch` lines: κ_0 = 0, w_0 = 0."""
    carries = tuple(lstm.zero_carry(batch, self.hidden, dtype) for _ in range(self.num_layers))
    return NetworkState(
      carries, jnp.zeros((batch, self.num_gaussians), dtype), jnp.zeros((batch, self.alphabet_size), dtype)
    )

  def one_hot(self, chars_BxU: jax.Array, dtype=jnp.float32) -> jax.Array:
    """One-hot characters c_u [B, U, A] (padding id 0 is masked out by `char_mask`)."""
    return jax.nn.one_hot(chars_BxU, self.alphabet_size, dtype=dtype)

  def _layer1_window_recurrence(self) -> tuple[recurrent.Cell, recurrent.LayerWeights]:
    """Layer 1 and the window as the one recurrence that both `_layer1_window_scan` and `step` run: h¹_t from
    [x_t, w_{t-1}] (W_h and W_xw fused in one matmul on [h¹_{t-1}, w_{t-1}]), then (κ_t, w_t, φ_t)."""
    layer1, a = self.layers[0], self.alphabet_size
    w_x = layer1.w_x[...]
    weights = recurrent.LayerWeights(
      w_x[:3],
      layer1.b[...],
      jnp.concatenate([layer1.w_h[...], w_x[3 : 3 + a]], 0),
      (layer1.peepholes(), self.w_window[...], self.b_window[...]),
      self._w_out(0),
    )
    cell = recurrent.Cell(
      _synthesis_rec,
      functools.partial(_synthesis_cell_step, self.lstm_clip, self.window_variant, self.compute_dtype),
      _synthesis_out,
      _synthesis_keep,
    )
    return cell, weights

  def _layer1_window_scan(self, state: NetworkState, x_TxBx3, onehot, char_mask):
    """Layer 1 and the window over time (recurrent.layer_scan, hoisted weight gradients); returns (final
    (c1, κ, w), (h¹, w, φ, κ, h¹ W_{h¹y}) over time)."""
    (h1, kappa_seq, w_seq), (phi, _, _), y1, final = recurrent.layer_scan(
      *self._layer1_window_recurrence(),
      (state.lstm[0], state.kappa, state.w),
      [x_TxBx3],
      (onehot, char_mask),
      compute_dtype=self.compute_dtype,
      remat=self.remat,
      chunk=self.remat_chunk,
      unroll=self.unroll,
    )
    return final, (h1, w_seq, phi, kappa_seq, y1)

  def __call__(
    self,
    inputs_BxTx3: jax.Array,
    chars_BxU: jax.Array,
    char_mask_BxU: jax.Array,
    state: NetworkState | None = None,
    time_major: bool = False,
  ) -> tuple[jax.Array, NetworkState, dict]:
    """Teacher-forced pass: returns ŷ [B, T, 6M+1] ([T, B, 6M+1] if `time_major`: no transposed copy), the final
    state, and aux {phi [B,T,U], kappa [B,T,K]}."""
    x = jnp.swapaxes(inputs_BxTx3, 0, 1)
    state = self.initial_state(x.shape[1], x.dtype) if state is None else state
    onehot, char_mask = self.one_hot(chars_BxU, x.dtype), char_mask_BxU.astype(x.dtype)
    (c1, kappa, w_last), (h1, w_seq, phi, kappa_seq, y1) = self._layer1_window_scan(state, x, onehot, char_mask)
    hs, ys, carries = [h1], [y1], [c1]
    for n in range(1, self.num_layers):
      carry, h, y_n = self._layer_scan(n, state.lstm[n], [x, hs[-1], w_seq])
      hs.append(h)
      ys.append(y_n)
      carries.append(carry)
    y = self._output_sum(ys) if time_major else jnp.swapaxes(self._output_sum(ys), 0, 1)
    aux = {"phi": jnp.swapaxes(phi, 0, 1), "kappa": jnp.swapaxes(kappa_seq, 0, 1)}
    return y, NetworkState(tuple(carries), kappa, w_last), aux

  def step(
    self, state: NetworkState, x_Bx3: jax.Array, chars_onehot_BxUxA: jax.Array, char_mask_BxU: jax.Array
  ) -> tuple[NetworkState, jax.Array, dict]:
    """One time step (sampling): new state, ŷ [B, 6M+1], aux {phi [B,U], kappa, alpha, beta [B,K]}."""
    consts = (chars_onehot_BxUxA, char_mask_BxU.astype(x_Bx3.dtype))
    (c1, kappa, w), (phi, alpha, beta) = recurrent.step(
      *self._layer1_window_recurrence(),
      (state.lstm[0], state.kappa, state.w),
      [x_Bx3],
      consts,
      compute_dtype=self.compute_dtype,
    )
    carries, y = self._step_layers(state, x_Bx3, c1.h, [w])
    aux = {"phi": phi, "kappa": kappa, "alpha": alpha, "beta": beta}
    return NetworkState((c1, *carries), kappa, w), y, aux


def build_network(
  model_cfg: "ModelConfig | ml_collections.ConfigDict",
  alphabet_size: int,
  seed: int,
  classes: tuple[type, type] | None = None,
) -> Network:
  """Build the network that `model_cfg.mode` names (one of `MODES`); `classes` = (prediction, synthesis) network
  classes to build instead of this module's (`reference.py` passes its autodiff ones)."""
  prediction, synthesis = classes or (PredictionNetwork, SynthesisNetwork)
  model_cfg = ModelConfig.of(model_cfg)
  rngs = nnx.Rngs(params=seed)
  if model_cfg.mode == "prediction":
    return prediction(model_cfg, rngs=rngs)
  if model_cfg.mode == "synthesis":
    return synthesis(model_cfg, alphabet_size, rngs=rngs)
  raise ValueError(f"unknown network mode {model_cfg.mode!r}; expected one of {MODES}")


def model_config(cfg: ml_collections.ConfigDict, *, graves_clipping: bool | None = None) -> ModelConfig:
  """The network fields of a whole config, with Graves derivative clipping as the optimiser's clipping mode says.

  Graves clipping (`model.lstm_clip` / `model.output_clip`) is applied when `graves_clipping` is True, which
  defaults to `cfg.optim.clip_mode == "graves"`; otherwise the two bounds are set to 0 (off). Sampling and
  evaluation are unaffected either way.
  """
  if graves_clipping is None:
    graves_clipping = cfg.optim.clip_mode == "graves"
  model_cfg = ModelConfig.of(cfg.model)
  return model_cfg if graves_clipping else dataclasses.replace(model_cfg, lstm_clip=0.0, output_clip=0.0)


def create_model(cfg: ml_collections.ConfigDict, alphabet_size: int, *, graves_clipping: bool | None = None) -> Network:
  """The network of a whole config: `model_config(cfg)` at seed `cfg.seed`."""
  return build_network(model_config(cfg, graves_clipping=graves_clipping), alphabet_size, cfg.seed)


def add_characters(model: SynthesisNetwork, count: int) -> None:
  """Grow `model`'s alphabet by `count` ids after its last one, in place: every layer's input rows for the window
  vector w (the last rows of W_x) gain `count` zero rows, so the network computes exactly what it did until it is
  trained on the new characters (e.g. the end symbol added to a trained writer, `data/end_of_text.py`)."""
  for layer in model.layers:
    w_x = layer.w_x[...]
    layer.w_x = nnx.Param(jnp.concatenate([w_x, jnp.zeros((count, w_x.shape[1]), w_x.dtype)], 0))
  model.alphabet_size += count


def count_params(model: nnx.Module) -> int:
  """Number of trainable scalars."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
