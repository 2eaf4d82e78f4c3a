"""Peephole LSTM cell (Graves 2013, eqs. 7-11) as a pure function of its pre-activations.

Gate order in every `4H` axis is (input, forget, cell, output). The matmuls that make the pre-activations are the
caller's (`recurrent.py`: the input projection `W_x x + b` hoisted over the whole sequence, `W_h h` per step).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from handwriting_jax.model.clipping import maybe_clip


class LSTMCarry(NamedTuple):
  """Recurrent state of one LSTM layer: hidden `h` and cell `c`, both [B, H]."""

  h: jax.Array
  c: jax.Array


def matmul(x: jax.Array, w: jax.Array, compute_dtype=None) -> jax.Array:
  """`x @ w` with optional low-precision inputs (e.g. bf16) and float32 accumulation and result."""
  if compute_dtype is None:
    return jnp.matmul(x, w)
  return jnp.matmul(x.astype(compute_dtype), w.astype(compute_dtype), preferred_element_type=jnp.float32)


def lstm_cell(peep_3xH: jax.Array | None, carry: LSTMCarry, z_Bx4H: jax.Array, clip: float | None = None) -> LSTMCarry:
  """Eqs. 7-11 after the matmuls: the new (h, c) from the previous carry and all four pre-activations
  `z = W_x x + W_h h' + b` (peepholes added here).

  `peep_3xH` holds the diagonal peepholes (w_ci, w_cf, w_co); None disables them. `clip` bounds the derivatives
  flowing into the four pre-activations during backprop (Graves clipping); None disables it.

  The input gate, forget gate and cell input go through one sigmoid over their concatenation, with
  tanh(z_c) = 2 σ(2 z_c) - 1: the same function, but XLA's CPU backend fuses one transcendental over a contiguous
  [B, 3H] slab into a fast loop, where three transcendentals over three slices of z made a fusion about ten times
  slower (`experiments/cell_probe.py`). The output gate waits for the new c (its peephole).
  """
  c_prev = carry.c
  z_i, z_f, z_c, z_o = jnp.split(z_Bx4H, 4, axis=-1)
  if peep_3xH is not None:
    z_i = z_i + peep_3xH[0] * c_prev
    z_f = z_f + peep_3xH[1] * c_prev
  z_i, z_f, z_c = maybe_clip(z_i, clip), maybe_clip(z_f, clip), maybe_clip(z_c, clip)
  i, f, sig_2zc = jnp.split(jax.nn.sigmoid(jnp.concatenate([z_i, z_f, 2.0 * z_c], axis=-1)), 3, axis=-1)
  c = f * c_prev + i * (2.0 * sig_2zc - 1.0)
  if peep_3xH is not None:
    z_o = z_o + peep_3xH[2] * c
  o = jax.nn.sigmoid(maybe_clip(z_o, clip))
  h = o * jnp.tanh(c)
  return LSTMCarry(h, c)


def zero_carry(batch: int, hidden: int, dtype=jnp.float32) -> LSTMCarry:
  """All-zero initial state of one layer."""
  return LSTMCarry(jnp.zeros((batch, hidden), dtype), jnp.zeros((batch, hidden), dtype))
