"""Soft attention window over the text (Graves 2013, eqs. 46-51) as a pure step function."""

from typing import NamedTuple

import jax
import jax.numpy as jnp

WINDOW_VARIANTS = ("exp", "softplus")


class WindowOutput(NamedTuple):
  """Window at step t: w [B, A] (eq. 47), kappa [B, K] (eq. 51), phi [B, U] (eq. 46), alpha and beta [B, K]."""

  w: jax.Array
  kappa: jax.Array
  phi: jax.Array
  alpha: jax.Array
  beta: jax.Array


def window_params(
  abk_hat_Bx3K: jax.Array, kappa_prev_BxK: jax.Array, variant: str = "exp"
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(α, β, κ) from the layer-1 projection (α̂, β̂, κ̂), eqs. 48-51.

  `exp` is the paper: α = exp(α̂), β = exp(β̂), κ = κ' + exp(κ̂). `softplus` is the variant of strong open ports
  (sjvasquez/handwriting-synthesis): α = softplus(α̂), β = softplus(β̂), κ = κ' + softplus(κ̂) / 25.
  """
  if variant == "exp":  # one transcendental over the whole slab, then split: a fast fusion on XLA's CPU backend
    alpha, beta, k_step = jnp.split(jnp.exp(abk_hat_Bx3K), 3, axis=-1)
    return alpha, beta, kappa_prev_BxK + k_step
  if variant == "softplus":
    alpha, beta, k_step = jnp.split(jax.nn.softplus(abk_hat_Bx3K), 3, axis=-1)
    return alpha, beta, kappa_prev_BxK + k_step / 25.0
  raise ValueError(f"unknown window variant {variant!r}; expected one of {WINDOW_VARIANTS}")


def window_phi(alpha_BxK: jax.Array, beta_BxK: jax.Array, kappa_BxK: jax.Array, num_positions: int) -> jax.Array:
  """φ(t, u) = Σ_k α_k exp(-β_k (κ_k - u)²) for u = 1..num_positions, eq. 46; returns [B, num_positions]."""
  u = jnp.arange(1, num_positions + 1, dtype=jnp.float32)
  d = kappa_BxK[:, :, None] - u[None, None, :]
  return jnp.sum(alpha_BxK[:, :, None] * jnp.exp(-beta_BxK[:, :, None] * d * d), axis=1)


def window_step(
  abk_hat_Bx3K: jax.Array,
  kappa_prev_BxK: jax.Array,
  chars_onehot_BxUxA: jax.Array,
  char_mask_BxU: jax.Array,
  variant: str = "exp",
) -> WindowOutput:
  """One window step: w_t = Σ_u φ(t, u) c_u over the real (unpadded) characters, eq. 47 (not normalised)."""
  alpha, beta, kappa = window_params(abk_hat_Bx3K, kappa_prev_BxK, variant)
  phi = window_phi(alpha, beta, kappa, chars_onehot_BxUxA.shape[1]) * char_mask_BxU
  w = jnp.einsum("bu,bua->ba", phi, chars_onehot_BxUxA)
  return WindowOutput(w, kappa, phi, alpha, beta)
