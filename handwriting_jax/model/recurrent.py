"""A recurrent layer over a whole sequence with a hand-written backward pass that hoists every weight gradient.

Plain `jax.grad` of a `lax.scan` computes the recurrent weight gradient `dW_h = Σ_t h_{t-1}ᵀ dz_t` inside the
reverse scan: one thin [H, B] x [B, 4H] matmul per step plus an [H, 4H] accumulator rewritten every step. Here the
reverse scan only carries what truly recurs (the state cotangents); it emits the pre-activation cotangents
dZ [T, B, G], and the weight gradients become single large matmuls over all T·B rows afterwards (as the forward
input projection already is):

  forward   Z_x = Σ_k X_k W_x[k] + b (hoisted);  per step: z_t = Z_x[t] + r(s_{t-1}) W_rec, (s_t, e_t) = cell(s_{t-1}, z_t)
  backward  per step (reverse): (ds_{t-1}, dz_t) = vjp(cell), ds_{t-1} += vjp(r)(dz_t W_recᵀ)
            hoisted: dW_rec = R_prevᵀ dZ, dW_x[k] = X_kᵀ dZ, db = Σ dZ, dX_k = dZ W_x[k]ᵀ

`remat=False` saves the pre-activations z_t (T·B·G floats). `remat=True` saves only the states s_t (which the layers
above need anyway) and recomputes Z = Z_x + R_prev W_rec in the backward pass, chunk by chunk in time, as large
matmuls: memory grows with the carries, not the gates, and the recompute runs at large-matmul speed.

The cell's own small parameters (peepholes, the window projection) are differentiated per step by `jax.vjp`.
Graves derivative clipping inside the cell (`clipping.maybe_clip`) is honoured since the cell is differentiated
by JAX.
"""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Carry = Any
CellParams = Any


class Cell(NamedTuple):
  """A recurrence split at its one large per-step matmul.

  `rec(carry) -> r [B, R]` is the part of the state multiplied by W_rec [R, G] each step (h, or [h, w]);
  `step(cell_params, consts, carry, z [B, G]) -> (new_carry, extra)` is everything else (gates, window); `consts`
  are per-sequence arrays that are not differentiated (the one-hot text); `extra` is a pytree of per-step outputs
  that are not part of the state (e.g. the attention φ).
  """
  rec: Callable[[Carry], jax.Array]
  step: Callable[[CellParams, Any, Carry, jax.Array], tuple[Carry, Any]]


class LayerWeights(NamedTuple):
  """Differentiable weights of a recurrent layer: input projection W_x [ΣI_k, G] and b [G], recurrent W_rec [R, G],
  and the cell's own parameters (a pytree)."""
  w_x: jax.Array
  b: jax.Array
  w_rec: jax.Array
  cell: CellParams


def _mm(x: jax.Array, w: jax.Array, compute_dtype) -> jax.Array:
  """`x @ w` with optional low-precision inputs and float32 accumulation."""
  if compute_dtype is None:
    return jnp.matmul(x, w)
  return jnp.matmul(x.astype(compute_dtype), w.astype(compute_dtype), preferred_element_type=jnp.float32)


def _mm_tn(a_NxP: jax.Array, b_NxQ: jax.Array, compute_dtype) -> jax.Array:
  """`aᵀ @ b` over a long shared row axis (a weight gradient), float32 result."""
  if compute_dtype is not None:
    a_NxP, b_NxQ = a_NxP.astype(compute_dtype), b_NxQ.astype(compute_dtype)
  return jax.lax.dot_general(a_NxP, b_NxQ, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def _project(w_x: jax.Array, b: jax.Array, xs: tuple[jax.Array, ...], compute_dtype) -> jax.Array:
  """Hoisted input projection Σ_k X_k W_x[k] + b over all time steps; X_k [..., I_k] -> [..., G]."""
  out, start = b, 0
  for x in xs:
    out = out + _mm(x, w_x[start:start + x.shape[-1]], compute_dtype)
    start += x.shape[-1]
  return out


def _flat(a: jax.Array) -> jax.Array:
  """[T, B, F] -> [T·B, F]."""
  return a.reshape(-1, a.shape[-1])


def _tree_add(a, b):
  return jax.tree.map(jnp.add, a, b)


def _prev_carries(carry0: Carry, carries_T: Carry) -> Carry:
  """States s_{t-1} for t = 0..T-1: the initial state followed by all but the last saved state."""
  return jax.tree.map(lambda c0, cs: jnp.concatenate([c0[None], cs[:-1]], axis=0), carry0, carries_T)


def _forward(cell: Cell, compute_dtype, unroll: int, weights: LayerWeights, consts, carry0: Carry,
             xs: tuple[jax.Array, ...], save_z: bool):
  """Forward pass: hoisted projection and one scan; returns (carries_T, extras_T, z_T or None)."""
  gates_x = _project(weights.w_x, weights.b, xs, compute_dtype)

  def body(carry, gx):
    z = gx + _mm(cell.rec(carry), weights.w_rec, compute_dtype)
    new, extra = cell.step(weights.cell, consts, carry, z)
    return new, (new, extra, z if save_z else None)

  _, (carries, extras, zs) = jax.lax.scan(body, carry0, gates_x, unroll=unroll)
  return carries, extras, zs


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _layer(cell, compute_dtype, remat, chunk, unroll, weights, consts, carry0, xs):
  carries, extras, _ = _forward(cell, compute_dtype, unroll, weights, consts, carry0, xs, save_z=False)
  return carries, extras


def _layer_fwd(cell, compute_dtype, remat, chunk, unroll, weights, consts, carry0, xs):
  carries, extras, zs = _forward(cell, compute_dtype, unroll, weights, consts, carry0, xs, save_z=not remat)
  return (carries, extras), (weights, consts, carry0, xs, carries, zs)


def _chunk_bwd(cell, compute_dtype, unroll, weights, consts, dcarry, dcell, xs_c, prev_c, z_c, dcarries_c, dextras_c):
  """Reverse pass over one chunk of time steps; returns the state/cell cotangents and the chunk's dZ [C, B, G]."""
  if z_c is None:  # remat: recompute the pre-activations as two large matmuls
    r_prev = jax.vmap(cell.rec)(prev_c)
    z_c = _project(weights.w_x, weights.b, xs_c, compute_dtype) + _mm(r_prev, weights.w_rec, compute_dtype)
  w_rec_t = weights.w_rec.T

  def body(acc, inp):
    dcarry, dcell = acc
    prev, z, dnew, dextra = inp
    dcarry = _tree_add(dcarry, dnew)  # the state s_t is also an output of the layer
    _, vjp = jax.vjp(lambda p, c, z: cell.step(p, consts, c, z), weights.cell, prev, z)
    dp, dprev, dz = vjp((dcarry, dextra))
    _, rec_vjp = jax.vjp(cell.rec, prev)
    (dprev_rec,) = rec_vjp(_mm(dz, w_rec_t, compute_dtype).astype(dz.dtype))
    return (_tree_add(dprev, dprev_rec), _tree_add(dcell, dp)), dz

  (dcarry, dcell), dz_c = jax.lax.scan(body, (dcarry, dcell), (prev_c, z_c, dcarries_c, dextras_c), reverse=True,
                                       unroll=unroll)
  return dcarry, dcell, dz_c


def _layer_bwd(cell, compute_dtype, remat, chunk, unroll, res, cts):
  weights, consts, carry0, xs, carries, zs = res
  dcarries, dextras = cts
  prev = _prev_carries(carry0, carries)
  num_steps = xs[0].shape[0]
  size = num_steps if not remat or chunk <= 0 else min(chunk, num_steps)
  n_full, rest = divmod(num_steps, size)
  dcarry = jax.tree.map(jnp.zeros_like, carry0)
  dcell = jax.tree.map(jnp.zeros_like, weights.cell)
  w_x_t = weights.w_x.T
  in_sizes = [x.shape[-1] for x in xs]
  grads = {"w_x": jnp.zeros_like(weights.w_x), "w_rec": jnp.zeros_like(weights.w_rec), "b": jnp.zeros_like(weights.b)}

  def run_chunk(acc, sliced):
    """Backward of one chunk of time steps: reverse scan, then the chunk's hoisted weight and input gradients."""
    dcarry, dcell, grads = acc
    xs_c, prev_c, z_c, dcarries_c, dextras_c = sliced
    dcarry, dcell, dz_c = _chunk_bwd(cell, compute_dtype, unroll, weights, consts, dcarry, dcell, xs_c, prev_c, z_c,
                                     dcarries_c, dextras_c)
    dz_flat = _flat(dz_c)
    dw_x = jnp.concatenate([_mm_tn(_flat(x), dz_flat, compute_dtype) for x in xs_c], axis=0)
    dw_rec = _mm_tn(_flat(jax.vmap(cell.rec)(prev_c)), dz_flat, compute_dtype)
    grads = {"w_x": grads["w_x"] + dw_x, "w_rec": grads["w_rec"] + dw_rec, "b": grads["b"] + jnp.sum(dz_flat, 0)}
    dxs, start = [], 0
    for n in in_sizes:
      dxs.append(_mm(dz_c, w_x_t[:, start:start + n], compute_dtype).astype(dz_c.dtype))
      start += n
    return (dcarry, dcell, grads), tuple(dxs)

  def sliced(get):
    return (jax.tree.map(get, xs), jax.tree.map(get, prev), None if zs is None else get(zs),
            jax.tree.map(get, dcarries), jax.tree.map(get, dextras))

  acc = (dcarry, dcell, grads)
  dxs_rest = None
  if rest:  # the last, partial chunk comes first in reverse time
    acc, dxs_rest = run_chunk(acc, sliced(lambda a: a[n_full * size:]))
  if n_full == 1:
    acc, dxs_full = run_chunk(acc, sliced(lambda a: a[:size]))
  else:
    def chunk_body(acc, i):
      return run_chunk(acc, sliced(lambda a: jax.lax.dynamic_slice_in_dim(a, i * size, size, axis=0)))

    acc, dxs_chunks = jax.lax.scan(chunk_body, acc, jnp.arange(n_full), reverse=True)
    dxs_full = tuple(d.reshape((n_full * size,) + d.shape[2:]) for d in dxs_chunks)
  dcarry, dcell, grads = acc
  dxs = dxs_full if dxs_rest is None else tuple(jnp.concatenate([f, r], 0) for f, r in zip(dxs_full, dxs_rest))
  dweights = LayerWeights(grads["w_x"].astype(weights.w_x.dtype), grads["b"].astype(weights.b.dtype),
                          grads["w_rec"].astype(weights.w_rec.dtype), dcell)
  return dweights, jax.tree.map(jnp.zeros_like, consts), dcarry, dxs


_layer.defvjp(_layer_fwd, _layer_bwd)


def layer_scan(cell: Cell, weights: LayerWeights, carry0: Carry, xs_TxBxI: tuple[jax.Array, ...], consts=None, *,
               compute_dtype=None, remat: bool = False, chunk: int = 200, unroll: int = 1
               ) -> tuple[Carry, Any]:
  """Run a recurrent layer over time-major inputs; returns (states s_t stacked over T, extras stacked over T).

  `xs_TxBxI` are the pieces of the layer input (their concatenation is multiplied by `weights.w_x`), kept apart so
  that no concatenated copy is made or saved. `chunk` bounds the time steps recomputed at once when `remat`;
  `unroll` is the unroll factor of the scans.
  """
  return _layer(cell, compute_dtype, bool(remat), int(chunk), int(unroll), weights, consts, carry0, tuple(xs_TxBxI))
