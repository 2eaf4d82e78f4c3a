"""Weight noise (Graves 2011, "Practical Variational Inference for Neural Networks"), the regulariser of the
paper's best results (Tables 3 and 4).

`config.optim.weight_noise`:
- "none": the plain network.
- "fixed": every training batch runs with weights w = μ + s·ε, ε ~ N(0, 1), s = `optim.weight_noise_std`.
- "adaptive": each weight has its own posterior N(μᵢ, σᵢ²), σᵢ = exp(log σᵢ) trained beside μ (initialised to
  `optim.weight_noise_std`); a batch runs with one draw w = μ + σ·ε, and the loss adds the complexity cost L_C of
  the posterior against the optimal Gaussian prior (closed form below), scaled by 1/N: the training loss is the
  batch mean of per-sequence NLLs, and the whole-set objective Σₙ NLLₙ + L_C carries L_C/N per sequence.

Weights are drawn once per batch (the same draw on every device, keyed by the step: resume stays bitwise), so the
hoisted matmuls keep one weight matrix per batch. Evaluation and sampling use the means μ (the ordinary params).
"""

from typing import Any

import jax
import jax.numpy as jnp


def _leaves(tree) -> list[jax.Array]:
  return jax.tree.leaves(tree)


def optimal_prior(mu_tree, log_sigma_tree) -> tuple[jax.Array, jax.Array]:
  """(μ_p, σ_p²) of the Gaussian prior that minimises L_C: μ_p = mean(μᵢ), σ_p² = mean(σᵢ² + (μᵢ − μ_p)²)."""
  mu = jnp.concatenate([jnp.ravel(x) for x in _leaves(mu_tree)])
  sigma2 = jnp.concatenate([jnp.ravel(jnp.exp(2.0 * s)) for s in _leaves(log_sigma_tree)])
  mu_p = jnp.mean(mu)
  return mu_p, jnp.mean(sigma2 + (mu - mu_p) ** 2)


def complexity_cost(mu_tree, log_sigma_tree) -> jax.Array:
  """L_C = Σᵢ [log(σ_p/σᵢ) + (σᵢ² + (μᵢ − μ_p)²) / (2σ_p²) − ½], the KL divergence of the posterior from the
  optimal prior (nats, summed over every weight)."""
  mu_p, sigma_p2 = optimal_prior(mu_tree, log_sigma_tree)
  total = jnp.zeros((), jnp.float32)
  for mu, log_sigma in zip(_leaves(mu_tree), _leaves(log_sigma_tree)):
    sigma2 = jnp.exp(2.0 * log_sigma)
    total += jnp.sum(0.5 * jnp.log(sigma_p2) - log_sigma + (sigma2 + (mu - mu_p) ** 2) / (2.0 * sigma_p2) - 0.5)
  return total


def init_log_sigma(params, std: float):
  """log σ for every weight, all set to log(`std`) (the tree of `params`)."""
  return jax.tree.map(lambda p: jnp.full(p.shape, jnp.log(std), p.dtype), params)


def noisy_weights(params, key: jax.Array, log_sigma=None, std: float | None = None):
  """One draw w = μ + σ·ε of every weight: σ = exp(`log_sigma`) (adaptive) or the constant `std` (fixed)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  eps = [jax.random.normal(k, p.shape, p.dtype) for k, p in zip(keys, leaves)]
  if log_sigma is not None:
    scales = [jnp.exp(s) for s in _leaves(log_sigma)]
  else:
    scales = [jnp.asarray(std, p.dtype) for p in leaves]
  return jax.tree.unflatten(treedef, [p + s * e for p, s, e in zip(leaves, scales, eps)])


def step_key(seed: int, step: jax.Array) -> jax.Array:
  """The noise key of a training step: a function of the config seed and the step only (bitwise resume)."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 0x5EED), step)


def describe(optim_cfg: Any, num_train_sequences: int) -> str:
  """One line for the training log saying what the noise is and how L_C is scaled."""
  mode = optim_cfg.weight_noise
  if mode == "fixed":
    return f"weight noise: fixed, std {optim_cfg.weight_noise_std:g}, one draw per batch"
  if mode == "adaptive":
    return (
      f"weight noise: adaptive (Graves 2011), σ initialised to {optim_cfg.weight_noise_std:g}, one draw per "
      f"batch; loss = NLL + L_C / N with N = {num_train_sequences:,} training lines"
    )
  return "weight noise: none"
