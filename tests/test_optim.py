"""Optimisers of `optim.make_optimizer` against NumPy references: Graves RMSProp (eqs. 38-41), clipping, schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from handwriting_jax.config import defaults
from handwriting_jax.training import optim


def _random_grads(rng: np.random.Generator, scale: float = 1.0) -> dict[str, np.ndarray]:
  """A small pytree of float32 gradients with entries of mixed magnitude."""
  return {
    "w_4x3": (rng.normal(size=(4, 3)) * scale).astype(np.float32),
    "b_5": (rng.normal(size=(5,)) * scale * rng.uniform(0.01, 3.0, size=(5,))).astype(np.float32),
  }


def _global_norm(tree: dict[str, np.ndarray]) -> float:
  return float(np.sqrt(sum(np.sum(np.square(v.astype(np.float64))) for v in tree.values())))


def _run(tx: optax.GradientTransformation, params: dict, grads_seq: list[dict]) -> list[dict[str, np.ndarray]]:
  """The update of every step of `tx` over `grads_seq`, applied to `params` as training does."""
  state = tx.init(params)
  updates_seq = []
  for grads in grads_seq:
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    updates_seq.append(jax.tree.map(np.asarray, updates))
  return updates_seq


def test_defaults_are_the_paper_rmsprop():
  cfg = defaults.optim_config()
  assert (cfg.name, cfg.decay, cfg.momentum, cfg.learning_rate, cfg.eps) == ("rmsprop", 0.95, 0.9, 1e-4, 1e-4)
  assert (cfg.schedule, cfg.warmup_steps) == ("constant", 0)


def test_graves_rmsprop_matches_numpy_eqs_38_to_41():
  cfg = defaults.optim_config()
  aleph, beth, gimel, daleth = 0.95, 0.9, 1e-4, 1e-4  # ℵ, ℶ, ℷ (learning rate), ℸ: section 4 of the paper
  rng = np.random.default_rng(0)
  params = jax.tree.map(jnp.asarray, _random_grads(rng))
  grads_seq = [_random_grads(rng, scale=s) for s in (1.0, 0.01, 5.0, 0.3, 1.0, 2.0)]
  got = _run(optim.make_optimizer(cfg, num_steps=100), params, grads_seq)

  n = {k: np.zeros(v.shape) for k, v in params.items()}
  g = {k: np.zeros(v.shape) for k, v in params.items()}
  delta = {k: np.zeros(v.shape) for k, v in params.items()}
  for t, grads in enumerate(grads_seq):
    for k, eps_k in grads.items():
      eps_k = eps_k.astype(np.float64)  # ∂L/∂w_i
      n[k] = aleph * n[k] + (1 - aleph) * eps_k**2  # eq. 38
      g[k] = aleph * g[k] + (1 - aleph) * eps_k  # eq. 39
      delta[k] = beth * delta[k] - gimel * eps_k / np.sqrt(n[k] - g[k] ** 2 + daleth)  # eq. 40
      # eq. 41: w_i <- w_i + Δ_i, so the update optax applies must be Δ_i itself.
      np.testing.assert_allclose(got[t][k], delta[k], rtol=2e-5, atol=1e-10, err_msg=f"step {t}, {k}")
  assert np.max(np.abs(got[-1]["w_4x3"])) > 1e-4  # momentum accumulated: the comparison is not of zeros


def test_global_norm_clip_rescales_to_max_grad_norm():
  rng = np.random.default_rng(1)
  params = jax.tree.map(jnp.asarray, _random_grads(rng))
  big = _random_grads(rng, scale=50.0)
  small = _random_grads(rng, scale=0.05)
  cfg_clip = defaults.optim_config()
  cfg_clip.clip_mode, cfg_clip.max_grad_norm = "global_norm", 1.0
  cfg_none = defaults.optim_config()
  cfg_none.clip_mode = "none"
  assert _global_norm(big) > 10.0 and _global_norm(small) < 1.0

  clipped = _run(optim.make_optimizer(cfg_clip, 100), params, [big, small])
  scale = cfg_clip.max_grad_norm / _global_norm(big)
  rescaled = {k: (v * scale).astype(np.float32) for k, v in big.items()}
  assert _global_norm(rescaled) == pytest.approx(1.0, rel=1e-5)
  reference = _run(optim.make_optimizer(cfg_none, 100), params, [rescaled, small])
  for t in range(2):
    for k in params:
      np.testing.assert_allclose(clipped[t][k], reference[t][k], rtol=1e-5, atol=1e-12)
  # The eps inside the square root makes RMSProp sensitive to the gradient scale: without the clip the first
  # update differs, so the comparison above can fail.
  unclipped = _run(optim.make_optimizer(cfg_none, 100), params, [big])
  assert not np.allclose(unclipped[0]["b_5"], clipped[0]["b_5"], rtol=1e-3)


def test_graves_clip_mode_leaves_the_optimizer_unclipped():
  rng = np.random.default_rng(2)
  params = jax.tree.map(jnp.asarray, _random_grads(rng))
  big = _random_grads(rng, scale=50.0)
  cfg_graves, cfg_none = defaults.optim_config(), defaults.optim_config()
  cfg_none.clip_mode = "none"
  assert cfg_graves.clip_mode == "graves"
  got = _run(optim.make_optimizer(cfg_graves, 10), params, [big])[0]
  want = _run(optim.make_optimizer(cfg_none, 10), params, [big])[0]
  for k in params:
    np.testing.assert_array_equal(got[k], want[k])


def test_cosine_schedule_with_warmup():
  cfg = defaults.optim_config()
  cfg.learning_rate, cfg.schedule, cfg.warmup_steps, cfg.final_fraction = 2e-3, "cosine", 10, 0.1
  num_steps = 110
  lr = optim.learning_rate_schedule(cfg, num_steps)
  peak, warmup, floor = cfg.learning_rate, cfg.warmup_steps, cfg.learning_rate * cfg.final_fraction

  def expected(step: int) -> float:
    if step < warmup:
      return peak * step / warmup
    progress = min((step - warmup) / (num_steps - warmup), 1.0)
    return floor + (peak - floor) * 0.5 * (1.0 + np.cos(np.pi * progress))

  assert float(lr(0)) == 0.0
  assert float(lr(warmup)) == pytest.approx(peak, rel=1e-6)
  assert float(lr(num_steps)) == pytest.approx(floor, rel=1e-5)
  for step in (3, 7, 10, 35, 60, 85, 109, 110, 200):
    assert float(lr(step)) == pytest.approx(expected(step), rel=1e-5, abs=1e-12), step


def test_constant_schedule_and_warmup_through_the_optimizer():
  cfg = defaults.optim_config()
  assert float(optim.learning_rate_schedule(cfg, 50)(37)) == pytest.approx(cfg.learning_rate)
  cfg.name, cfg.learning_rate, cfg.schedule, cfg.warmup_steps = "adam", 1e-2, "cosine", 4
  rng = np.random.default_rng(3)
  params = jax.tree.map(jnp.asarray, _random_grads(rng))
  updates = _run(optim.make_optimizer(cfg, 20), params, [_random_grads(rng) for _ in range(2)])
  for k in params:
    np.testing.assert_array_equal(updates[0][k], 0.0)  # learning rate 0 at step 0 of the warm-up
  # Adam moves each weight by at most about the learning rate of the step: lr(1) = 1e-2 / 4.
  step1 = np.abs(updates[1]["w_4x3"])
  assert np.max(step1) <= 2.5e-3 * 1.01 and np.max(step1) > 2.5e-3 * 0.5
