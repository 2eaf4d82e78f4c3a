"""Graves-style derivative clipping: identity forward, clipped cotangent backward (paper section 4.1 note)."""

import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def clip_gradient(x: jax.Array, bound: float) -> jax.Array:
  """Return `x`; in backprop clip the derivative flowing into `x` to [-bound, bound] (as RNNLIB does)."""
  return x


def _clip_fwd(x, bound):
  return x, None


def _clip_bwd(bound, _, g):
  return (jnp.clip(g, -bound, bound),)


clip_gradient.defvjp(_clip_fwd, _clip_bwd)


def maybe_clip(x: jax.Array, bound: float | None) -> jax.Array:
  """Apply `clip_gradient` when a bound is set (clipping mode `graves`), else return `x` untouched."""
  return x if bound is None else clip_gradient(x, bound)
