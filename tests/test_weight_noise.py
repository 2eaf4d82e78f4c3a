"""Weight noise (Graves 2011): the complexity cost and its gradients against NumPy and finite differences, the
optimal prior's closed form, σ → 0 giving back the noiseless data term, and runs that train, resume bitwise,
start from another checkpoint (`train.init_from`) and evaluate on the means."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from handwriting_jax.config import defaults
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.model import networks
from handwriting_jax.training import checkpoint as ckpt_lib
from handwriting_jax.training import loop as train
from handwriting_jax.training import optim, restore, weight_noise
from handwriting_jax.training import step as step_lib
from handwriting_jax.writing import writer as writer_lib

_DATA = {"embedded.num_lines": 48, "embedded.valid_lines": 8, "num_buckets": 1}


def _tree(rng: np.random.Generator) -> tuple[dict, dict]:
  """A small (μ, log σ) pair of trees with two leaves of different shapes."""
  mu = {"a": rng.normal(0.0, 0.3, (3, 4)).astype(np.float32), "b": rng.normal(0.5, 0.1, (5,)).astype(np.float32)}
  log_sigma = {
    "a": rng.normal(-2.0, 0.5, (3, 4)).astype(np.float32),
    "b": rng.normal(-3.0, 0.5, (5,)).astype(np.float32),
  }
  return mu, log_sigma


def _kl_numpy(mu: np.ndarray, log_sigma: np.ndarray, mu_p: float | None = None, sigma_p2: float | None = None):
  """Σᵢ KL(N(μᵢ, σᵢ²) ‖ N(μ_p, σ_p²)) in float64; the prior defaults to the closed-form optimum."""
  mu, sigma2 = mu.astype(np.float64), np.exp(2.0 * log_sigma.astype(np.float64))
  if mu_p is None:
    mu_p = mu.mean()
    sigma_p2 = np.mean(sigma2 + (mu - mu_p) ** 2)
  return float(np.sum(0.5 * np.log(sigma_p2 / sigma2) + (sigma2 + (mu - mu_p) ** 2) / (2 * sigma_p2) - 0.5))


def _flat(tree: dict) -> np.ndarray:
  return np.concatenate([np.ravel(tree[k]) for k in sorted(tree)])


def test_complexity_cost_matches_numpy():
  mu, log_sigma = _tree(np.random.default_rng(0))
  got = float(weight_noise.complexity_cost(mu, log_sigma))
  assert got == pytest.approx(_kl_numpy(_flat(mu), _flat(log_sigma)), rel=1e-5)
  assert got > 0


def test_the_closed_form_prior_is_the_optimum():
  mu, log_sigma = _tree(np.random.default_rng(1))
  mu_p, sigma_p2 = (float(x) for x in weight_noise.optimal_prior(mu, log_sigma))
  m, s = _flat(mu), _flat(log_sigma)
  assert mu_p == pytest.approx(m.mean(), rel=1e-5)
  best = _kl_numpy(m, s, mu_p, sigma_p2)
  for d_mu, f_s2 in [(0.05, 1.0), (-0.05, 1.0), (0.0, 1.2), (0.0, 0.8), (0.02, 0.9)]:
    assert _kl_numpy(m, s, mu_p + d_mu, sigma_p2 * f_s2) > best


def test_complexity_cost_gradients_match_finite_differences():
  mu, log_sigma = _tree(np.random.default_rng(2))
  g_mu, g_s = jax.grad(weight_noise.complexity_cost, argnums=(0, 1))(mu, log_sigma)
  h = 1e-4
  for tree, grads, which in [(mu, g_mu, 0), (log_sigma, g_s, 1)]:
    for key in tree:
      for idx in [(0,) * tree[key].ndim, tuple(np.array(tree[key].shape) - 1)]:

        def f(delta, key=key, idx=idx, which=which):
          trees = [{k: v.astype(np.float64).copy() for k, v in t.items()} for t in (mu, log_sigma)]
          trees[which][key][idx] += delta
          return _kl_numpy(_flat(trees[0]), _flat(trees[1]))

        fd = (f(h) - f(-h)) / (2 * h)
        assert float(grads[key][idx]) == pytest.approx(fd, rel=2e-3, abs=2e-3), (which, key, idx)


def _tiny(**optim_fields):
  cfg = defaults.apply_variant(defaults.base_config("synthesis"), "tiny")
  cfg.data.update_from_flattened_dict(_DATA)
  cfg.train.sample_every = 0
  for k, v in optim_fields.items():
    cfg.optim[k] = v
  return cfg


def _batch(rng: np.random.Generator, alphabet_size: int, b: int = 4, t: int = 12, u: int = 3) -> dict:
  offsets = np.concatenate([rng.normal(size=(b, t + 1, 2)), (rng.random((b, t + 1, 1)) < 0.2)], -1)
  chars = rng.integers(1, alphabet_size, (b, u))
  return {
    "inputs": offsets[:, :-1].astype(np.float32),
    "targets": offsets[:, 1:].astype(np.float32),
    "mask": np.ones((b, t), np.float32),
    "chars": chars.astype(np.int32),
    "char_mask": np.ones((b, u), np.float32),
  }


def test_vanishing_sigma_gives_back_the_noiseless_data_term_and_gradients():
  cfg = _tiny(weight_noise="adaptive", weight_noise_std=1e-12)
  model = networks.create_model(cfg, 10)
  graphdef, params = nnx.split(model, nnx.Param)
  batch = _batch(np.random.default_rng(3), 10)
  noise = step_lib.Noise("adaptive", 1e-12, 0, 0.0)  # 1/N = 0: the data term alone
  log_sigma = weight_noise.init_log_sigma(params, 1e-12)
  obj = functools.partial(step_lib.objective, graphdef, noise, batch=batch, step=jnp.int32(5))
  (value, (nll, _, lc)), (g_mu, g_s) = jax.value_and_grad(obj, has_aux=True)((params, log_sigma))
  (ref, _), g_ref = jax.value_and_grad(lambda p: step_lib.batch_loss(graphdef, p, batch), has_aux=True)(params)
  np.testing.assert_allclose(float(nll), float(ref), rtol=1e-6)
  np.testing.assert_allclose(float(value), float(ref), rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g_mu), jax.tree.leaves(g_ref), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g_s)) < 1e-6  # ∂/∂log σ = g·ε·σ → 0
  assert float(lc) > 1e5  # the complexity cost itself diverges as σ → 0


def test_noise_draws_depend_on_the_step_only_and_change_the_loss():
  cfg = _tiny()
  graphdef, params = nnx.split(networks.create_model(cfg, 10), nnx.Param)
  batch = _batch(np.random.default_rng(4), 10)
  noise = step_lib.Noise("fixed", 0.05, 0, 0.0)
  loss = lambda s: float(step_lib.objective(graphdef, noise, params, batch, jnp.int32(s))[1][0])
  clean = float(step_lib.batch_loss(graphdef, params, batch)[0])
  assert loss(3) == loss(3) and loss(3) != loss(4) and loss(3) != clean


def _run(cfg, workdir, **train_fields):
  for k, v in train_fields.items():
    cfg.train[k] = v
  cfg.data.cache_dir = os.path.join(os.path.dirname(workdir), "cache")
  return train.train_and_evaluate(cfg, workdir)


def _restore(workdir, cfg, step=None):
  ckpt = ckpt_lib.Checkpointer(workdir, read_only=True)
  try:
    size = Alphabet(ckpt.restore_metadata(step)["alphabet"]).size
    return ckpt.restore(restore.abstract_train_state(cfg, size), step)
  finally:
    ckpt.close()


def test_adaptive_noise_trains_resumes_bitwise_and_evaluates_on_the_means(tmp_path):
  full = _tiny(weight_noise="adaptive", weight_noise_std=0.01)
  metrics_a = _run(full, str(tmp_path / "a"), num_steps=8, checkpoint_every=4, eval_every=4)
  _run(
    _tiny(weight_noise="adaptive", weight_noise_std=0.01),
    str(tmp_path / "b"),
    num_steps=4,
    checkpoint_every=4,
    eval_every=4,
  )
  metrics_b = _run(
    _tiny(weight_noise="adaptive", weight_noise_std=0.01),
    str(tmp_path / "b"),
    num_steps=8,
    checkpoint_every=4,
    eval_every=4,
  )
  state_a, _ = _restore(str(tmp_path / "a"), full)
  state_b, _ = _restore(str(tmp_path / "b"), full)
  assert state_a.log_sigma is not None
  with open(os.path.join(str(tmp_path / "a"), "checkpoints", "8", "state", "_METADATA"), encoding="utf-8") as f:
    assert '"noise"' in f.read()  # log σ is stored under the name checkpoints have always used
  for x, y in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert metrics_a == metrics_b
  sigma = np.concatenate([np.ravel(np.exp(np.asarray(s))) for s in jax.tree.leaves(state_a.log_sigma)])
  assert not np.allclose(sigma, 0.01)  # σ is trained
  with open(tmp_path / "a" / "train.log", encoding="utf-8") as f:
    log = f.read()
  assert "weight noise: adaptive" in log and "complexity=" in log
  # The writer (write, evaluate, serve) reads the means: the restored params, nothing noisy.
  writer = writer_lib.load_writer(str(tmp_path / "a"))
  for x, y in zip(jax.tree.leaves(nnx.state(writer.model, nnx.Param)), jax.tree.leaves(state_a.params), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_noiseless_workdir_refuses_a_noisy_resume(tmp_path):
  _run(_tiny(), str(tmp_path / "w"), num_steps=2, checkpoint_every=2, eval_every=2)
  with pytest.raises(ckpt_lib.IncompatibleWorkdirError, match=r"optim.weight_noise"):
    _run(_tiny(weight_noise="adaptive"), str(tmp_path / "w"), num_steps=4, checkpoint_every=2, eval_every=2)


def test_init_from_starts_from_another_checkpoint_and_refuses_another_network(tmp_path):
  _run(_tiny(), str(tmp_path / "src"), num_steps=3, checkpoint_every=3, eval_every=3)
  source = jax.tree.leaves(nnx.state(writer_lib.load_writer(str(tmp_path / "src")).model, nnx.Param))
  fresh = jax.tree.leaves(
    nnx.state(networks.create_model(_tiny(), writer_lib.load_writer(str(tmp_path / "src")).alphabet.size), nnx.Param)
  )
  assert max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(source, fresh)) > 1e-3
  export = str(tmp_path / "export")
  writer_lib.export_model(str(tmp_path / "src"), export)
  for path in (str(tmp_path / "src"), export):  # a workdir or a params-only export
    cfg = _tiny(weight_noise="adaptive", weight_noise_std=0.01, learning_rate=1e-7)
    cfg.train.init_from = path
    dst = str(tmp_path / f"dst_{os.path.basename(path)}")
    _run(cfg, dst, num_steps=1, checkpoint_every=1, eval_every=1)
    with open(os.path.join(dst, "train.log"), encoding="utf-8") as f:
      assert f"initialised from {path}" in f.read()
    state, _ = _restore(dst, cfg)
    for a, b in zip(jax.tree.leaves(state.params), source, strict=True):  # one step of lr 1e-7 from the source
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
  bigger = _tiny()
  bigger.model.hidden_size = 24
  bigger.train.init_from = export
  with pytest.raises(train.InitFromError, match=r"model.hidden_size") as err:
    _run(bigger, str(tmp_path / "bad"), num_steps=1)
  assert "config.model of the run it starts from" in str(err.value) and "new --workdir" not in str(err.value)
  missing = _tiny()
  missing.train.init_from = str(tmp_path / "nowhere")
  with pytest.raises(train.InitFromError, match="nowhere"):
    _run(missing, str(tmp_path / "bad2"), num_steps=1)


def test_optimizer_covers_log_sigma():
  cfg = _tiny(weight_noise="adaptive", weight_noise_std=0.02)
  tx = optim.make_optimizer(cfg.optim, 10)
  _, state = step_lib.create_train_state(networks.create_model(cfg, 10), tx, step_lib.noise_settings(cfg, 48))
  assert len(jax.tree.leaves(state.log_sigma)) == len(jax.tree.leaves(state.params))
  np.testing.assert_allclose(np.exp(np.asarray(jax.tree.leaves(state.log_sigma)[0])), 0.02, rtol=1e-6)
