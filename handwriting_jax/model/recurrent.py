"""A recurrent layer over a whole sequence with a hand-written backward pass that hoists every weight gradient.

Plain `jax.grad` of a `lax.scan` computes the recurrent weight gradient `dW_h = Σ_t h_{t-1}ᵀ dz_t` inside the
reverse scan: one thin [H, B] x [B, 4H] matmul per step plus an [H, 4H] accumulator rewritten every step. Here the
reverse scan only carries what truly recurs (the state cotangents); it emits the pre-activation cotangents
dZ [T, B, G], and the weight gradients become single large matmuls over all T·B rows afterwards (as the forward
input projection already is):

  forward   Z_x = Σ_k X_k W_x[k] + b (hoisted);
            per step: z_t = Z_x[t] + r(s_{t-1}) W_rec, (s_t, e_t) = cell(s_{t-1}, z_t)
  backward  per step (reverse): (ds_{t-1}, dz_t) = vjp(cell), ds_{t-1} += vjp(r)(dz_t W_recᵀ)
            hoisted: dW_rec = R_prevᵀ dZ, dW_x[k] = X_kᵀ dZ, db = Σ dZ, dX_k = dZ W_x[k]ᵀ

Both passes run chunk by chunk in time (`chunk` steps): a chunk's input projection Z_x is one large matmul made
right before its steps, so no full-length [T, B, G] projection is ever materialised; the backward builds the
previous states s_{t-1}, dZ and the recompute per chunk and writes dX into its output buffers in place.
`remat=False` saves the states s_t and the pre-activations z_t (T·B·G floats). `remat=True` saves only the kept part
k_t = keep(s_t) of the states (h, or h, κ and w: what the layers above need anyway) and the full states at the chunk
boundaries; the backward pass recomputes a chunk's Z = Z_x + R_prev W_rec as large matmuls (R_prev = rec(k_{t-1})),
then its full states (the cell states c_t) by a matmul-free scan of `cell.step` from the boundary state: memory grows
with the kept states, not the gates or the cell states, and the recompute runs at large-matmul speed. Output
cotangents that are symbolic zeros (κ_t and the attention φ in training) are never materialised.

The cell's own small parameters (peepholes, the window projection) are differentiated per step by `jax.vjp`.
Graves derivative clipping inside the cell (`clipping.maybe_clip`) is honoured since the cell is differentiated
by JAX.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from handwriting_jax.model import lstm

Carry = Any
CellParams = Any


class Cell(NamedTuple):
  """A recurrence split at its one large per-step matmul.

  `keep(carry) -> kept` selects the part of the state that the layer outputs over time (h, or h, κ and w; None: the
  whole state); it must be a plain selection of leaves (linear), and the rest of the state (the cell state c) must
  follow from it and `step` alone. `rec(kept) -> r [B, R]` is the part multiplied by W_rec [R, G] each step (h, or
  [h, w]); `step(cell_params, consts, carry, z [B, G]) -> (new_carry, extra)` is everything else (gates, window);
  `consts` are per-sequence arrays that are not differentiated (the one-hot text); `extra` is a pytree of per-step
  outputs that are not part of the state (e.g. the attention φ); `out(kept) -> o [B, O]` is the part multiplied by
  the layer's output projection W_out (h), when the layer has one.
  """

  rec: Callable[[Any], jax.Array]
  step: Callable[[CellParams, Any, Carry, jax.Array], tuple[Carry, Any]]
  out: Callable[[Any], jax.Array] | None = None
  keep: Callable[[Carry], Any] | None = None

  def kept(self, carry: Carry):
    """The part of `carry` that the layer outputs (and saves under remat)."""
    return carry if self.keep is None else self.keep(carry)


class LayerWeights(NamedTuple):
  """Differentiable weights of a recurrent layer: input projection W_x [ΣI_k, G] and b [G], recurrent W_rec [R, G],
  and the cell's own parameters (a pytree); optional output projection W_out [O, Y] (the layer's share of the
  network's output layer, applied chunk by chunk so that its input cotangent is never full-length)."""

  w_x: jax.Array
  b: jax.Array
  w_rec: jax.Array
  cell: CellParams
  w_out: jax.Array | None = None


def _mm_tn(a_NxP: jax.Array, b_NxQ: jax.Array, compute_dtype) -> jax.Array:
  """`aᵀ @ b` over a long shared row axis (a weight gradient), float32 result."""
  if compute_dtype is not None:
    a_NxP, b_NxQ = a_NxP.astype(compute_dtype), b_NxQ.astype(compute_dtype)
  return jax.lax.dot_general(a_NxP, b_NxQ, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def _project(w_x: jax.Array, b: jax.Array, xs: tuple[jax.Array, ...], compute_dtype) -> jax.Array:
  """Hoisted input projection Σ_k X_k W_x[k] + b over all time steps; X_k [..., I_k] -> [..., G]."""
  out, start = b, 0
  for x in xs:
    out = out + lstm.matmul(x, w_x[start : start + x.shape[-1]], compute_dtype)
    start += x.shape[-1]
  return out


def _flat(a: jax.Array) -> jax.Array:
  """[T, B, F] -> [T·B, F]."""
  return a.reshape(-1, a.shape[-1])


def _tree_add(a, b):
  return jax.tree.map(jnp.add, a, b)


def _is_symbolic_zero(x) -> bool:
  return isinstance(x, jax.custom_derivatives.SymbolicZero)


def _drop_zeros(tree):
  """Output cotangents with their symbolic zeros as None (so that no full-length zeros are materialised)."""
  return jax.tree.map(lambda x: None if _is_symbolic_zero(x) else x, tree, is_leaf=_is_symbolic_zero)


def _step_zeros(tree):
  """Per-step zeros [B, ...] in place of the symbolic zeros of a time-major cotangent pytree (None elsewhere)."""
  return jax.tree.map(
    lambda x: jnp.zeros(x.aval.shape[1:], x.aval.dtype) if _is_symbolic_zero(x) else None,
    tree,
    is_leaf=_is_symbolic_zero,
  )


def _chunking(num_steps: int, chunk: int) -> tuple[int, int, int]:
  """(chunk size, number of full chunks, length of the last partial chunk) of `num_steps` time steps."""
  size = num_steps if chunk <= 0 else min(chunk, num_steps)
  n_full, rest = divmod(num_steps, size)
  return size, n_full, rest


def _slice(tree, start, size: int):
  """Time steps [start, start + size) of a time-major pytree (`start` static or traced)."""
  return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, size, axis=0), tree)


def _update(bufs, outs, start):
  """Write the time-major pytree `outs` into the full-length buffers `bufs` at time `start` (in place)."""
  return jax.tree.map(lambda b, o: jax.lax.dynamic_update_slice_in_dim(b, o.astype(b.dtype), start, axis=0), bufs, outs)


def _over_chunks(run_chunk, acc, num_steps: int, chunk: int, reverse: bool, out_like, starts: bool = False):
  """Run `run_chunk(acc, start, size) -> (acc, outs_c)` over the time chunks (in reverse when `reverse`), writing
  each chunk's time-major outputs into full-length buffers; `out_like(size)` gives the shapes of `outs_c`.
  Returns (acc, outputs, with `starts` the accs entering each chunk stacked in time order [chunks, ...], else
  None). No full-length intermediate other than the outputs themselves is made."""
  size, n_full, rest = _chunking(num_steps, chunk)
  stack = lambda *trees: jax.tree.map(lambda *a: jnp.concatenate(a, 0), *trees)
  if n_full == 1 and not rest:
    return *run_chunk(acc, 0, size), (jax.tree.map(lambda a: a[None], acc) if starts else None)
  bufs = jax.tree.map(lambda s: jnp.zeros((num_steps,) + s.shape[1:], s.dtype), out_like(size))

  def body(state, i):
    acc, bufs = state
    acc_in = acc
    acc, outs = run_chunk(acc, i * size, size)
    return (acc, _update(bufs, outs, i * size)), (acc_in if starts else None)

  def tail(acc, bufs):
    acc_in = jax.tree.map(lambda a: a[None], acc) if starts else None
    acc, outs = run_chunk(acc, n_full * size, rest)
    return acc, _update(bufs, outs, n_full * size), acc_in

  if rest and reverse:  # the last, partial chunk comes first in reverse time
    acc, bufs, tail_in = tail(acc, bufs)
  (acc, bufs), accs_in = jax.lax.scan(body, (acc, bufs), jnp.arange(n_full), reverse=reverse)
  if rest and not reverse:
    acc, bufs, tail_in = tail(acc, bufs)
  return acc, bufs, (stack(accs_in, tail_in) if rest and starts else accs_in)


def _advance(
  cell: Cell, weights: LayerWeights, consts, carry: Carry, gates_x_BxG: jax.Array, compute_dtype
) -> tuple[Carry, Any, jax.Array]:
  """One step from its input projection Z_x[t]: z_t = Z_x[t] + r(k_{t-1}) W_rec, then the cell; (s_t, e_t, z_t)."""
  z = gates_x_BxG + lstm.matmul(cell.rec(cell.kept(carry)), weights.w_rec, compute_dtype)
  new, extra = cell.step(weights.cell, consts, carry, z)
  return new, extra, z


def _forward(
  cell,
  compute_dtype,
  chunk: int,
  unroll: int,
  weights: LayerWeights,
  consts,
  carry0: Carry,
  xs: tuple[jax.Array, ...],
  save_full: bool,
):
  """Forward pass, chunk by chunk in time: the chunk's input projection as one large matmul, then the scan over
  its steps. Returns (final state, kept states k_T (the full states s_T with `save_full`), extras_T, z_T with
  `save_full` else None, out(k_T) W_out or None, the states entering each chunk [chunks, ...]). No full-length
  projection (nor, without `save_full`, full-length cell state) is ever materialised."""
  num_steps = xs[0].shape[0]

  def run_chunk(carry, start, size):
    gates_x = _project(weights.w_x, weights.b, _slice(xs, start, size), compute_dtype)

    def body(carry, gx):
      new, extra, z = _advance(cell, weights, consts, carry, gx, compute_dtype)
      return new, (new if save_full else cell.kept(new), extra, z if save_full else None)

    carry, (news, extras, zs) = jax.lax.scan(body, carry, gates_x, unroll=unroll)
    kept = jax.vmap(cell.kept)(news) if save_full else news
    ys = None if weights.w_out is None else lstm.matmul(jax.vmap(cell.out)(kept), weights.w_out, compute_dtype)
    return carry, (news, extras, zs, ys)

  out_like = lambda size: jax.eval_shape(lambda: run_chunk(carry0, 0, size))[1]
  final, (news, extras, zs, ys), starts = _over_chunks(
    run_chunk, carry0, num_steps, chunk, False, out_like, starts=not save_full
  )
  return final, news, extras, zs, ys, starts


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _layer(cell, compute_dtype, remat, chunk, unroll, weights, consts, carry0, xs):
  final, kept, extras, _, ys, _ = _forward(
    cell, compute_dtype, chunk, unroll, weights, consts, carry0, xs, save_full=False
  )
  return kept, extras, ys, final


def _layer_fwd(cell, compute_dtype, remat, chunk, unroll, weights, consts, carry0, xs):
  is_primal = lambda x: isinstance(x, jax.custom_derivatives.CustomVJPPrimal)
  weights, consts, carry0, xs = jax.tree.map(lambda x: x.value, (weights, consts, carry0, xs), is_leaf=is_primal)
  final, states, extras, zs, ys, starts = _forward(
    cell, compute_dtype, chunk, unroll, weights, consts, carry0, xs, save_full=not remat
  )
  kept = states if remat else jax.vmap(cell.kept)(states)
  # remat: kept states and the states entering each chunk; else the full states and the pre-activations
  return (kept, extras, ys, final), (weights, consts, carry0, xs, states, zs, starts)


def _layer_bwd(cell, compute_dtype, remat, chunk, unroll, res, cts):
  weights, consts, carry0, xs, states, zs, starts = res
  dkepts, dextras, dys = _drop_zeros(cts[0]), _drop_zeros(cts[1]), _drop_zeros(cts[2])
  dfinal = _drop_zeros(cts[3])
  with_out = weights.w_out is not None and dys is not None
  dkept_zeros, dextra_zeros = _step_zeros(cts[0]), _step_zeros(cts[1])
  kept0 = cell.kept(carry0)
  dkept_zeros = jax.tree.map(
    lambda z, k: jnp.zeros_like(k) if z is None else z, dkept_zeros, kept0, is_leaf=lambda x: x is None
  )
  num_steps = xs[0].shape[0]
  size_full = _chunking(num_steps, chunk)[0]
  w_x_t, w_rec_t = weights.w_x.T, weights.w_rec.T
  in_sizes = [x.shape[-1] for x in xs]
  grads = {"w_x": jnp.zeros_like(weights.w_x), "w_rec": jnp.zeros_like(weights.w_rec), "b": jnp.zeros_like(weights.b)}
  if with_out:
    grads["w_out"] = jnp.zeros_like(weights.w_out)

  def prev_states(start, size):
    """States s_{t-1} of the chunk's steps: s_{start-1} (or the initial state) and the chunk's own states but the
    last; a chunk-sized copy only."""
    before = jax.tree.map(lambda c: jax.lax.dynamic_index_in_dim(c, jnp.maximum(start - 1, 0), keepdims=False), states)
    first = jax.tree.map(lambda c0, b: jnp.where(start == 0, c0, b), carry0, before)
    return jax.tree.map(lambda f, cs: jnp.concatenate([f[None], cs], 0), first, _slice(states, start, size - 1))

  def rebuild(start, size, xs_c, kept_c):
    """remat: the chunk's states s_{t-1} and pre-activations z_t from the state entering the chunk and the kept
    states: Z as two large matmuls, then the full states by a matmul-free scan of `cell.step`."""
    first = jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, start // size_full, keepdims=False), starts)
    kept_prev = jax.tree.map(lambda f, k: jnp.concatenate([f[None], k[: size - 1]], 0), cell.kept(first), kept_c)
    r_prev = _flat(jax.vmap(cell.rec)(kept_prev))
    z_rec = lstm.matmul(r_prev, weights.w_rec, compute_dtype).reshape((size, -1, weights.w_rec.shape[-1]))
    z_c = _project(weights.w_x, weights.b, xs_c, compute_dtype) + z_rec

    def body(carry, z):
      return cell.step(weights.cell, consts, carry, z)[0], carry

    _, prev_c = jax.lax.scan(body, first, z_c, unroll=unroll)
    return prev_c, r_prev, z_c

  def reverse_scan(dcarry, dcell, prev_c, z_c, dkept_c, dextras_c):
    """Reverse pass over one chunk of time steps; returns the state/cell cotangents and the chunk's dZ [C, B, G].
    None leaves of the output cotangents `dkept_c`, `dextras_c` are zeros (`dkept_zeros`, `dextra_zeros` hold them
    per step)."""
    fill = lambda zeros, d: jax.tree.map(lambda z, d: z if d is None else d, zeros, d, is_leaf=lambda x: x is None)
    rec_full = lambda c: cell.rec(cell.kept(c))

    def body(acc, inp):
      dcarry, dcell = acc
      prev, z, dkept, dextra = inp
      _, keep_vjp = jax.vjp(cell.kept, prev)  # linear: its transpose is the same at s_t and s_{t-1}
      (dnew,) = keep_vjp(fill(dkept_zeros, dkept))
      dcarry = _tree_add(dcarry, dnew)  # the kept state k_t is also an output of the layer
      _, vjp = jax.vjp(lambda p, c, z: cell.step(p, consts, c, z), weights.cell, prev, z)
      dp, dprev, dz = vjp((dcarry, fill(dextra_zeros, dextra)))
      _, rec_vjp = jax.vjp(rec_full, prev)
      (dprev_rec,) = rec_vjp(lstm.matmul(dz, w_rec_t, compute_dtype).astype(dz.dtype))
      return (_tree_add(dprev, dprev_rec), _tree_add(dcell, dp)), dz

    (dcarry, dcell), dz_c = jax.lax.scan(
      body, (dcarry, dcell), (prev_c, z_c, dkept_c, dextras_c), reverse=True, unroll=unroll
    )
    return dcarry, dcell, dz_c

  def run_chunk(acc, start, size):
    """Backward of one chunk of time steps: reverse scan, then the chunk's hoisted weight and input gradients."""
    dcarry, dcell, grads = acc
    xs_c, grads = _slice(xs, start, size), dict(grads)
    if zs is None:
      kept_c = _slice(states, start, size)
      prev_c, r_prev, z_c = rebuild(start, size, xs_c, kept_c)
    else:
      kept_c, prev_c = jax.vmap(cell.kept)(_slice(states, start, size)), prev_states(start, size)
      r_prev, z_c = _flat(jax.vmap(cell.rec)(jax.vmap(cell.kept)(prev_c))), _slice(zs, start, size)
    dkept_c = _slice(dkepts, start, size)
    if with_out:  # the output projection's share: dK += vjp(out)(dY W_outᵀ), dW_out += O_tᵀ dY
      dys_c, out_fn = _slice(dys, start, size), jax.vmap(cell.out)
      o_c, out_vjp = jax.vjp(out_fn, kept_c)
      (d_out,) = out_vjp(lstm.matmul(dys_c, weights.w_out.T, compute_dtype).astype(o_c.dtype))
      dkept_c = jax.tree.map(lambda a, b: a if b is None else a + b, d_out, dkept_c)
      grads["w_out"] = grads["w_out"] + _mm_tn(_flat(o_c), _flat(dys_c), compute_dtype)
    dcarry, dcell, dz_c = reverse_scan(dcarry, dcell, prev_c, z_c, dkept_c, _slice(dextras, start, size))
    dz_flat = _flat(dz_c)
    dw_x = jnp.concatenate([_mm_tn(_flat(x), dz_flat, compute_dtype) for x in xs_c], axis=0)
    dw_rec = _mm_tn(r_prev, dz_flat, compute_dtype)
    grads.update(w_x=grads["w_x"] + dw_x, w_rec=grads["w_rec"] + dw_rec, b=grads["b"] + jnp.sum(dz_flat, 0))
    dxs, begin = [], 0
    for n in in_sizes:
      dxs.append(lstm.matmul(dz_c, w_x_t[:, begin : begin + n], compute_dtype).astype(dz_c.dtype))
      begin += n
    return (dcarry, dcell, grads), tuple(dxs)

  dcarry = jax.tree.map(lambda c, d: jnp.zeros_like(c) if d is None else d, carry0, dfinal, is_leaf=lambda x: x is None)
  acc = (dcarry, jax.tree.map(jnp.zeros_like, weights.cell), grads)
  out_like = lambda size: tuple(jax.ShapeDtypeStruct((size,) + x.shape[1:], x.dtype) for x in xs)
  (dcarry, dcell, grads), dxs, _ = _over_chunks(run_chunk, acc, num_steps, chunk, True, out_like)
  dweights = LayerWeights(
    grads["w_x"].astype(weights.w_x.dtype),
    grads["b"].astype(weights.b.dtype),
    grads["w_rec"].astype(weights.w_rec.dtype),
    dcell,
    None
    if weights.w_out is None
    else grads["w_out"].astype(weights.w_out.dtype)
    if with_out
    else jnp.zeros_like(weights.w_out),
  )
  return dweights, jax.tree.map(jnp.zeros_like, consts), dcarry, dxs


_layer.defvjp(_layer_fwd, _layer_bwd, symbolic_zeros=True)


def layer_scan(
  cell: Cell,
  weights: LayerWeights,
  carry0: Carry,
  xs_TxBxI: tuple[jax.Array, ...],
  consts=None,
  *,
  compute_dtype=None,
  remat: bool = False,
  chunk: int = 50,
  unroll: int = 1,
) -> tuple[Any, Any, jax.Array | None, Carry]:
  """Run a recurrent layer over time-major inputs; returns (kept states keep(s_t) stacked over T, extras stacked
  over T, out(keep(s_t)) W_out [T, B, Y] or None without `weights.w_out`, the final state s_T).

  `xs_TxBxI` are the pieces of the layer input (their concatenation is multiplied by `weights.w_x`), kept apart so
  that no concatenated copy is made or saved. `chunk` is the time steps per chunk of both passes (<= 0: all);
  `unroll` is the unroll factor of the scans.
  """
  return _layer(cell, compute_dtype, bool(remat), int(chunk), int(unroll), weights, consts, carry0, tuple(xs_TxBxI))


def step(
  cell: Cell, weights: LayerWeights, carry: Carry, xs_BxI: Sequence[jax.Array], consts=None, *, compute_dtype=None
) -> tuple[Carry, Any]:
  """One time step of the same recurrence as `layer_scan`, differentiated by plain autodiff (what sampling runs);
  returns (s_t, extra_t) from s_{t-1} and the pieces of the input x_t."""
  gates_x = _project(weights.w_x, weights.b, tuple(xs_BxI), compute_dtype)
  new, extra, _ = _advance(cell, weights, consts, carry, gates_x, compute_dtype)
  return new, extra
