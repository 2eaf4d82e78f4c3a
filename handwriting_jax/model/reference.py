"""Plain-autodiff reference of the networks' teacher-forced pass: for tests and the benchmark, not for training.

The production networks (`networks.py`) run every layer through `recurrent.layer_scan`: hoisted input projections,
time chunks, a hand-written backward with hoisted weight gradients. The classes here are the same modules (same
parameters, same initialisation, same `step`) whose scans are written the obvious way instead: per layer one
`jax.lax.scan` of the one-step equations (`lstm_step`: eqs. 7-11; layer 1 and the window: eqs. 46-51), differentiated
by plain `jax.grad`. tests/test_model.py and tests/test_train.py check the fast path against them (forward and
gradients); `experiments/benchmark.py --variants=autodiff` times them.
"""

import jax
import jax.numpy as jnp
import ml_collections

from handwriting_jax.model import lstm, networks, window


def lstm_step(
  w_h_Hx4H: jax.Array,
  peep_3xH: jax.Array | None,
  carry: lstm.LSTMCarry,
  gates_x_Bx4H: jax.Array,
  clip: float | None = None,
  compute_dtype=None,
) -> lstm.LSTMCarry:
  """One peephole LSTM step, eqs. 7-11: returns the new (h, c) from the previous carry and `W_x x + b`."""
  return lstm.lstm_cell(peep_3xH, carry, gates_x_Bx4H + lstm.matmul(carry.h, w_h_Hx4H, compute_dtype), clip)


def lstm_scan(
  w_h_Hx4H: jax.Array,
  peep_3xH: jax.Array | None,
  carry: lstm.LSTMCarry,
  gates_x_TxBx4H: jax.Array,
  clip: float | None = None,
  compute_dtype=None,
  remat: bool = False,
  unroll: int = 1,
) -> tuple[lstm.LSTMCarry, jax.Array]:
  """Run `lstm_step` over time (time-major input projections); returns the final carry and h [T, B, H]."""

  def body(carry, gates_x):
    carry = lstm_step(w_h_Hx4H, peep_3xH, carry, gates_x, clip, compute_dtype)
    return carry, carry.h

  if remat:
    body = jax.checkpoint(body)
  return jax.lax.scan(body, carry, gates_x_TxBx4H, unroll=unroll)


def _layer_scan(
  net: networks.Network, n: int, carry: lstm.LSTMCarry, inputs_TxBxI: list[jax.Array]
) -> tuple[lstm.LSTMCarry, jax.Array, jax.Array]:
  """`Network._layer_scan` as one input projection of the concatenated input and a plain `lstm_scan`."""
  layer, dtype = net.layers[n], net.compute_dtype
  gates_x = lstm.matmul(jnp.concatenate(inputs_TxBxI, axis=-1), layer.w_x[...], dtype) + layer.b[...]
  carry, h = lstm_scan(layer.w_h[...], layer.peepholes(), carry, gates_x, net.lstm_clip, dtype, net.remat, net.unroll)
  return carry, h, lstm.matmul(h, net._w_out(n), dtype)


class PredictionNetwork(networks.PredictionNetwork):
  """The prediction network with plain-autodiff layer scans."""

  _layer_scan = _layer_scan


class SynthesisNetwork(networks.SynthesisNetwork):
  """The synthesis network with plain-autodiff scans: layers >= 2 as `lstm_scan`, layer 1 and the window as one
  `lax.scan` of `lstm_step` then `window.window_step`."""

  _layer_scan = _layer_scan

  def _layer1_window_scan(self, state: networks.NetworkState, x_TxBx3, onehot, char_mask):
    """Layer 1 and the window over time; returns (final (c1, κ, w), (h¹, w, φ, κ, h¹ W_{h¹y}) over time)."""
    layer1, a, dtype = self.layers[0], self.alphabet_size, self.compute_dtype
    w_x, w_h, peep = layer1.w_x[...], layer1.w_h[...], layer1.peepholes()
    w_window, b_window = self.w_window[...], self.b_window[...]
    gates_x1 = lstm.matmul(x_TxBx3, w_x[:3], dtype) + layer1.b[...]

    def body(carry, gx):
      c1, kappa, w_prev = carry
      c1 = lstm_step(w_h, peep, c1, gx + lstm.matmul(w_prev, w_x[3 : 3 + a], dtype), self.lstm_clip, dtype)
      abk = lstm.matmul(c1.h, w_window, dtype) + b_window
      win = window.window_step(abk, kappa, onehot, char_mask, self.window_variant)
      return (c1, win.kappa, win.w), (c1.h, win.w, win.phi, win.kappa)

    if self.remat:
      body = jax.checkpoint(body)
    carry, (h1, w_seq, phi, kappa_seq) = jax.lax.scan(
      body, (state.lstm[0], state.kappa, state.w), gates_x1, unroll=self.unroll
    )
    return carry, (h1, w_seq, phi, kappa_seq, lstm.matmul(h1, self._w_out(0), dtype))


def build_network(
  model_cfg: "networks.ModelConfig | ml_collections.ConfigDict", alphabet_size: int, seed: int
) -> networks.Network:
  """`networks.build_network` with the reference scans (the same parameters for the same seed)."""
  return networks.build_network(model_cfg, alphabet_size, seed, (PredictionNetwork, SynthesisNetwork))


def create_model(cfg: ml_collections.ConfigDict, alphabet_size: int) -> networks.Network:
  """`networks.create_model` with the reference scans."""
  return build_network(networks.model_config(cfg), alphabet_size, cfg.seed)
