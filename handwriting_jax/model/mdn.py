"""Mixture density output (Graves 2013, eqs. 15-26): parameter transform, log-likelihood, sampling.

`y_hat` has `6M + 1` entries laid out as [ê | π̂ (M) | μ̂₁ (M) | μ̂₂ (M) | σ̂₁ (M) | σ̂₂ (M) | ρ̂ (M)].
Everything is kept in log space: log π by log-softmax, log σ = σ̂, and log(1 - ρ²) from ρ̂ directly.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

LOG_2PI = math.log(2.0 * math.pi)  # plain Python: no JAX computation at import (jax.distributed comes first)


class MixtureParams(NamedTuple):
  """Transformed outputs over leading dims [...]: log π [..., M], μ [..., M, 2], log σ [..., M, 2], ρ̂ [..., M],
  end-of-stroke logit ê [...] (e = sigmoid(ê))."""

  log_pi: jax.Array
  mu: jax.Array
  log_sigma: jax.Array
  rho_hat: jax.Array
  eos_logit: jax.Array

  @property
  def rho(self) -> jax.Array:
    """Correlation ρ = tanh(ρ̂), eq. 22."""
    return jnp.tanh(self.rho_hat)


def output_size(num_mixtures: int) -> int:
  """Width of ŷ for M mixtures: 6M + 1 (eq. 17)."""
  return 6 * num_mixtures + 1


def mixture_params(y_hat: jax.Array, bias: float | jax.Array = 0.0) -> MixtureParams:
  """Eqs. 18-22 with sampling bias b (eqs. 61-62): σ = exp(σ̂ - b), π = softmax(π̂ (1 + b)); b = 0 in training."""
  eos_logit = y_hat[..., 0]
  pi_hat, mu1, mu2, s1, s2, rho_hat = jnp.split(y_hat[..., 1:], 6, axis=-1)
  bias = jnp.asarray(bias, y_hat.dtype)
  bias_m = bias[..., None] if bias.ndim else bias  # a per-line bias broadcasts over the M components
  log_pi = jax.nn.log_softmax(pi_hat * (1.0 + bias_m), axis=-1)
  mu = jnp.stack([mu1, mu2], axis=-1)
  log_sigma = jnp.stack([s1 - bias_m, s2 - bias_m], axis=-1)
  return MixtureParams(log_pi, mu, log_sigma, rho_hat, eos_logit)


def log_one_minus_tanh_sq(x: jax.Array) -> jax.Array:
  """log(1 - tanh(x)²) = 2 log sech(x), computed without cancellation for large |x|."""
  ax = jnp.abs(x)
  return 2.0 * (jnp.log(2.0) - ax - jax.nn.softplus(-2.0 * ax))


def bivariate_log_density(params: MixtureParams, xy: jax.Array) -> jax.Array:
  """log N(x | μ_j, σ_j, ρ_j) per component (eqs. 24-25); xy [..., 2] -> [..., M]."""
  sigma = jnp.exp(params.log_sigma)
  d = (xy[..., None, :] - params.mu) / sigma
  rho = params.rho
  log_1mr2 = log_one_minus_tanh_sq(params.rho_hat)
  z = d[..., 0] ** 2 + d[..., 1] ** 2 - 2.0 * rho * d[..., 0] * d[..., 1]
  return -LOG_2PI - params.log_sigma[..., 0] - params.log_sigma[..., 1] - 0.5 * log_1mr2 - 0.5 * z * jnp.exp(-log_1mr2)


def log_likelihood(params: MixtureParams, target: jax.Array) -> jax.Array:
  """log Pr(x_{t+1} | y_t), eq. 23 / 26: mixture log-density of (dx, dy) plus Bernoulli log-prob of eos; [...]."""
  log_mix = jax.nn.logsumexp(params.log_pi + bivariate_log_density(params, target[..., :2]), axis=-1)
  eos = target[..., 2]
  log_eos = jnp.where(eos > 0.5, jax.nn.log_sigmoid(params.eos_logit), jax.nn.log_sigmoid(-params.eos_logit))
  return log_mix + log_eos


def sequence_loss(
  y_hat_BxTxY: jax.Array, targets_BxTx3: jax.Array, mask_BxT: jax.Array, time_major: bool = False
) -> tuple[jax.Array, jax.Array]:
  """Masked NLL: (nats per sequence = mean over lines of the summed NLL, nats per step over real steps); with
  `time_major` all three arguments have T and B swapped."""
  nll = -log_likelihood(mixture_params(y_hat_BxTxY), targets_BxTx3) * mask_BxT
  total = jnp.sum(nll)
  per_sequence = total / y_hat_BxTxY.shape[1 if time_major else 0]
  per_step = total / jnp.maximum(jnp.sum(mask_BxT), 1.0)
  return per_sequence, per_step


def sample(key: jax.Array, params: MixtureParams) -> jax.Array:
  """Draw one point (dx, dy, eos) per leading index from the mixture; returns [..., 3] float32."""
  k_pi, k_xy, k_eos = jax.random.split(key, 3)
  j = jax.random.categorical(k_pi, params.log_pi, axis=-1)
  take = lambda a: jnp.take_along_axis(a, j[..., None], axis=-1)[..., 0]
  mu1, mu2 = take(params.mu[..., 0]), take(params.mu[..., 1])
  s1, s2 = jnp.exp(take(params.log_sigma[..., 0])), jnp.exp(take(params.log_sigma[..., 1]))
  rho = take(params.rho)
  n1, n2 = jnp.split(jax.random.normal(k_xy, j.shape + (2,)), 2, axis=-1)
  n1, n2 = n1[..., 0], n2[..., 0]
  x1 = mu1 + s1 * n1
  x2 = mu2 + s2 * (rho * n1 + jnp.sqrt(jnp.maximum(1.0 - rho * rho, 0.0)) * n2)
  eos = jax.random.bernoulli(k_eos, jax.nn.sigmoid(params.eos_logit)).astype(jnp.float32)
  return jnp.stack([x1, x2, eos], axis=-1)
