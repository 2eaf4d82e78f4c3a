"""Equations of the pure cores against NumPy/SciPy references, shapes (chex), gradients, Graves clipping."""

import dataclasses

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl.testing import parameterized
from scipy import stats

from handwriting_jax.config import defaults
from handwriting_jax.model import clipping, lstm, mdn, networks, reference, window


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def tiny_model_cfg(mode: str, **overrides) -> ml_collections.ConfigDict:
  cfg = defaults.apply_variant(defaults.base_config(mode), "tiny").model
  for k, v in overrides.items():
    cfg[k] = v
  return cfg


class PureFunctionTest(parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_lstm_cell_matches_numpy(self):
    rng = np.random.default_rng(0)
    b, h = 3, 5
    w_h = rng.normal(size=(h, 4 * h)).astype(np.float32) * 0.5
    peep = rng.normal(size=(3, h)).astype(np.float32)
    h0, c0 = rng.normal(size=(b, h)).astype(np.float32), rng.normal(size=(b, h)).astype(np.float32)
    gx = rng.normal(size=(b, 4 * h)).astype(np.float32)
    carry = self.variant(lambda c, g: lstm.lstm_cell(peep, c, g + c.h @ w_h))(lstm.LSTMCarry(h0, c0), gx)
    chex.assert_shape([carry.h, carry.c], (b, h))
    z = gx + h0 @ w_h
    zi, zf, zc, zo = np.split(z, 4, axis=-1)
    i = _sigmoid(zi + peep[0] * c0)  # eq. 7
    f = _sigmoid(zf + peep[1] * c0)  # eq. 8
    c = f * c0 + i * np.tanh(zc)  # eq. 9
    o = _sigmoid(zo + peep[2] * c)  # eq. 10
    np.testing.assert_allclose(carry.c, c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry.h, o * np.tanh(c), rtol=1e-5, atol=1e-6)  # eq. 11

  @parameterized.parameters(None, 0.05)
  def test_lstm_cell_gradients_match_the_textbook_cell(self, clip):
    """The cell's sigmoid slab (tanh(z_c) = 2σ(2z_c) - 1) has the derivatives of eqs. 7-11 written with tanh,
    Graves-clipped the same way; wide pre-activations exercise saturation and the ±clip bound."""
    rng = np.random.default_rng(5)
    b, h = 4, 6
    peep = jnp.asarray(rng.normal(size=(3, h)), jnp.float32)
    c0 = jnp.asarray(rng.normal(size=(b, h)) * 2, jnp.float32)
    z = jnp.asarray(rng.normal(size=(b, 4 * h)) * 4, jnp.float32)
    weights = jnp.asarray(rng.normal(size=(2, b, h)), jnp.float32)

    def textbook(peep, c_prev, z):
      zi, zf, zc, zo = jnp.split(z, 4, axis=-1)
      cl = lambda x: clipping.maybe_clip(x, clip)
      i, f = jax.nn.sigmoid(cl(zi + peep[0] * c_prev)), jax.nn.sigmoid(cl(zf + peep[1] * c_prev))
      c = f * c_prev + i * jnp.tanh(cl(zc))
      return jax.nn.sigmoid(cl(zo + peep[2] * c)) * jnp.tanh(c), c

    def fast(peep, c_prev, z):
      carry = lstm.lstm_cell(peep, lstm.LSTMCarry(jnp.zeros_like(c_prev), c_prev), z, clip)
      return carry.h, carry.c

    def loss(fn):
      def f(*args):
        h_new, c_new = fn(*args)
        return jnp.sum(weights[0] * h_new + weights[1] * c_new)

      return f

    g_fast = jax.grad(loss(fast), argnums=(0, 1, 2))(peep, c0, z)
    g_ref = jax.grad(loss(textbook), argnums=(0, 1, 2))(peep, c0, z)
    chex.assert_trees_all_close(g_fast, g_ref, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(fast(peep, c0, z), textbook(peep, c0, z), rtol=1e-6, atol=2e-7)
    if clip is not None:  # the bound is reached, so the test sees clipping
      dz = jax.grad(loss(fast), argnums=2)(peep, c0, z)
      assert float(jnp.abs(dz).max()) == pytest.approx(clip)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters("exp", "softplus")
  def test_window_matches_numpy_loop(self, variant):
    rng = np.random.default_rng(1)
    b, k, u, a = 2, 3, 6, 5
    abk = rng.normal(size=(b, 3 * k)).astype(np.float32)
    kappa_prev = rng.uniform(0, 3, size=(b, k)).astype(np.float32)
    chars = rng.integers(2, a, size=(b, u))
    mask = np.ones((b, u), np.float32)
    mask[1, 4:] = 0
    onehot = np.eye(a, dtype=np.float32)[chars]
    out = self.variant(lambda *args: window.window_step(*args, variant=variant))(abk, kappa_prev, onehot, mask)
    chex.assert_shape(out.w, (b, a))
    chex.assert_shape(out.phi, (b, u))
    chex.assert_shape([out.kappa, out.alpha, out.beta], (b, k))
    ah, bh, kh = np.split(abk.astype(np.float64), 3, axis=-1)
    if variant == "exp":
      alpha, beta, kappa = np.exp(ah), np.exp(bh), kappa_prev + np.exp(kh)
    else:
      sp = lambda x: np.log1p(np.exp(x))
      alpha, beta, kappa = sp(ah), sp(bh), kappa_prev + sp(kh) / 25.0
    phi = np.zeros((b, u))
    w = np.zeros((b, a))
    for bi in range(b):
      for ui in range(u):
        if mask[bi, ui] == 0:
          continue
        for ki in range(k):
          phi[bi, ui] += alpha[bi, ki] * np.exp(-beta[bi, ki] * (kappa[bi, ki] - (ui + 1)) ** 2)  # eq. 46
        w[bi] += phi[bi, ui] * onehot[bi, ui]  # eq. 47
    np.testing.assert_allclose(out.kappa, kappa, rtol=1e-5)
    np.testing.assert_allclose(out.phi, phi, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out.w, w, rtol=1e-4, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_mdn_log_likelihood_matches_scipy(self):
    rng = np.random.default_rng(2)
    m, n = 4, 6
    y_hat = rng.normal(size=(n, 6 * m + 1)).astype(np.float32)
    y_hat[:, 1 + 5 * m :] *= 2.0  # strong correlations
    target = np.concatenate([rng.normal(size=(n, 2)), rng.integers(0, 2, size=(n, 1))], -1).astype(np.float32)
    ll = self.variant(lambda y, t: mdn.log_likelihood(mdn.mixture_params(y), t))(y_hat, target)
    chex.assert_shape(ll, (n,))
    for t in range(n):
      e_hat, pi_hat, mu1, mu2, s1, s2, rho_hat = (y_hat[t, :1], *np.split(y_hat[t, 1:].astype(np.float64), 6))
      pi = np.exp(pi_hat) / np.exp(pi_hat).sum()  # eq. 19
      sig1, sig2, rho = np.exp(s1), np.exp(s2), np.tanh(rho_hat)  # eqs. 21-22
      dens = sum(
        pi[j]
        * stats.multivariate_normal.pdf(
          target[t, :2],
          mean=[mu1[j], mu2[j]],
          cov=[[sig1[j] ** 2, rho[j] * sig1[j] * sig2[j]], [rho[j] * sig1[j] * sig2[j], sig2[j] ** 2]],
        )
        for j in range(m)
      )
      e = _sigmoid(e_hat[0])
      expected = np.log(dens) + np.log(e if target[t, 2] == 1 else 1 - e)
      np.testing.assert_allclose(ll[t], expected, rtol=1e-4, atol=1e-4)

  def test_mdn_stays_finite_when_rho_saturates(self):
    """ρ̂ = 9: tanh(ρ̂) rounds to 1 in float32, so a naive log(1 - ρ²) is -inf; ours stays finite."""
    y_hat = jnp.zeros((1, 6 * 2 + 1)).at[0, 5 * 2 + 1 :].set(9.0)
    target = jnp.array([[0.1, -0.1, 1.0]])
    assert float(jnp.tanh(y_hat[0, -1])) == 1.0
    ll_fn = lambda y: mdn.log_likelihood(mdn.mixture_params(y), target).sum()
    chex.assert_tree_all_finite(ll_fn(y_hat))
    chex.assert_tree_all_finite(jax.grad(ll_fn)(y_hat))

  def test_sequence_loss_masks_padding_and_reports_both_units(self):
    rng = np.random.default_rng(3)
    y_hat = jnp.asarray(rng.normal(size=(2, 5, 13)), jnp.float32)
    targets = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32).at[..., 2].set(0.0)
    mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], jnp.float32)
    per_seq, per_step = mdn.sequence_loss(y_hat, targets, mask)
    ll = np.asarray(mdn.log_likelihood(mdn.mixture_params(y_hat), targets))
    total = -(ll[0, :3].sum() + ll[1].sum())
    np.testing.assert_allclose(per_seq, total / 2, rtol=1e-5)
    np.testing.assert_allclose(per_step, total / 8, rtol=1e-5)
    garbage = targets.at[0, 3:].set(1e6)
    np.testing.assert_allclose(mdn.sequence_loss(y_hat, garbage, mask)[0], per_seq, rtol=1e-6)

  def test_bias_sharpens_mixture(self):
    y_hat = jnp.asarray(np.random.default_rng(4).normal(size=(13,)), jnp.float32)
    p0, p1 = mdn.mixture_params(y_hat), mdn.mixture_params(y_hat, 2.0)
    np.testing.assert_allclose(p1.log_sigma, p0.log_sigma - 2.0, rtol=1e-6)  # σ = exp(σ̂ - b)
    np.testing.assert_allclose(p1.log_pi, jax.nn.log_softmax(y_hat[1:3] * 3.0), rtol=1e-5)  # π ∝ exp(π̂(1+b))

  def test_clip_gradient_bounds_derivatives(self):
    f = lambda x: jnp.sum(clipping.clip_gradient(x, 10.0) * jnp.array([1000.0, -5.0, -1000.0]))
    x = jnp.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(jax.grad(f)(x), [10.0, -5.0, -10.0])
    np.testing.assert_array_equal(clipping.clip_gradient(x, 10.0), x)


class NetworkTest(parameterized.TestCase):
  def _batch(self, b=2, t=7, u=5, a=9, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(b, t, 3)).astype(dtype)
    inputs[..., 2] = rng.integers(0, 2, size=(b, t))
    chars = rng.integers(2, a, size=(b, u)).astype(np.int32)
    char_mask = np.ones((b, u), dtype)
    char_mask[0, u - 2 :] = 0
    chars[0, u - 2 :] = 0
    return inputs, chars, char_mask

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters("prediction", "synthesis")
  def test_network_shapes(self, mode):
    cfg = tiny_model_cfg(mode)
    net = networks.build_network(cfg, 9, 0)
    inputs, chars, char_mask = self._batch()
    y, state, aux = self.variant(net)(inputs, chars, char_mask)
    chex.assert_shape(y, (2, 7, mdn.output_size(cfg.num_mixtures)))
    chex.assert_shape([c.h for c in state.lstm], (2, cfg.hidden_size))
    chex.assert_tree_all_finite((y, state))
    if mode == "synthesis":
      chex.assert_shape(aux["phi"], (2, 7, 5))
      chex.assert_shape(aux["kappa"], (2, 7, cfg.num_window_gaussians))
      chex.assert_shape(state.w, (2, 9))

  @parameterized.parameters(
    ("prediction", False, True),
    ("synthesis", False, True),
    ("synthesis", True, True),
    ("prediction", True, False),
    ("synthesis", True, True, 3),
    ("prediction", True, True, 3),
    ("synthesis", False, True, 3),
    ("synthesis", True, True, 1),
  )
  def test_fast_path_equals_the_references(self, mode, remat, peepholes, remat_chunk=200):
    """The production scans (hoisted projections, hand-written backward; time chunks, with or without remat, that
    do or do not divide T) equal the plain-autodiff reference scans (model/reference.py) and the one-step
    formulation that sampling runs, forward and gradients (fp32)."""
    cfg = tiny_model_cfg(mode, remat=remat, peepholes=peepholes, remat_chunk=remat_chunk)
    net = networks.build_network(cfg, 9, 0)
    inputs, chars, char_mask = self._batch()
    from flax import nnx

    graphdef, params = nnx.split(net, nnx.Param)
    ref_graphdef, ref_params = nnx.split(reference.build_network(cfg, 9, 0), nnx.Param)
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, ref_params), jax.tree.map(np.asarray, params))

    def fast(p):
      return nnx.merge(graphdef, p)(inputs, chars, char_mask)[0]

    def autodiff(p):
      return nnx.merge(ref_graphdef, p)(inputs, chars, char_mask)[0]

    def plain(p):
      model = nnx.merge(graphdef, p)
      state = model.initial_state(inputs.shape[0])
      onehot = model.one_hot(chars) if mode == "synthesis" else None
      ys = []
      for t in range(inputs.shape[1]):
        state, y, _ = model.step(state, inputs[:, t], onehot, char_mask)
        ys.append(y)
      return jnp.stack(ys, 1)

    loss = lambda fn: lambda p: jnp.sum(jnp.sin(fn(p)))
    y_fast, g_fast = jax.jit(fast)(params), jax.jit(jax.grad(loss(fast)))(params)
    for ref in (autodiff, plain):
      np.testing.assert_allclose(y_fast, jax.jit(ref)(params), rtol=1e-5, atol=1e-5, err_msg=ref.__name__)
      chex.assert_trees_all_close(g_fast, jax.jit(jax.grad(loss(ref)))(params), rtol=1e-4, atol=1e-5)

  @parameterized.parameters("prediction", "synthesis")
  def test_gradients_match_finite_differences_float64(self, mode):
    with jax.enable_x64(True):
      cfg = tiny_model_cfg(mode, hidden_size=4, num_mixtures=2, lstm_clip=0.0, output_clip=0.0)
      net = networks.build_network(cfg, 6, 0)
      from flax import nnx

      graphdef, params = nnx.split(net, nnx.Param)
      params = jax.tree.map(lambda x: x.astype(jnp.float64), params)
      inputs, chars, char_mask = self._batch(b=2, t=4, u=3, a=6, dtype=np.float64)
      targets = np.roll(inputs, -1, axis=1)
      mask = np.ones(inputs.shape[:2])

      def loss(p):
        y, _, _ = nnx.merge(graphdef, p)(inputs, chars, char_mask)
        return mdn.sequence_loss(y, targets, mask)[0]

      flat, unravel = jax.flatten_util.ravel_pytree(params)
      flat_loss = jax.jit(lambda v: loss(unravel(v)))
      g_flat = jax.jit(jax.grad(flat_loss))(flat)
      rng = np.random.default_rng(0)
      eps = 1e-6
      idx = rng.choice(flat.size, size=40, replace=False)
      perturb = jnp.zeros((idx.size, flat.size)).at[np.arange(idx.size), idx].set(eps)
      fd = (jax.vmap(flat_loss)(flat + perturb) - jax.vmap(flat_loss)(flat - perturb)) / (2 * eps)
      np.testing.assert_allclose(g_flat[idx], fd, rtol=1e-5, atol=1e-7)

  def test_graves_clipping_bounds_lstm_and_output_derivatives(self):
    """A loss with huge output derivatives: with clipping on, d loss / d ŷ is clipped to ±100, and the
    derivatives into the LSTM pre-activations to ±10 (checked through the last layer's bias gradient)."""
    from flax import nnx

    inputs, chars, char_mask = self._batch(b=1, t=1)
    results = {}
    for clip in (0.0, 1.0):
      cfg = tiny_model_cfg("prediction", num_layers=1, lstm_clip=10.0 * clip, output_clip=100.0 * clip)
      net = networks.build_network(cfg, 9, 0)
      graphdef, params = nnx.split(net, nnx.Param)
      scale = jnp.full((mdn.output_size(cfg.num_mixtures),), 1e4).at[::2].set(-1e4)

      def loss(p, graphdef=graphdef, scale=scale):
        return jnp.sum(nnx.merge(graphdef, p)(inputs, chars, char_mask)[0] * scale)

      results[clip] = jax.grad(loss)(params)
    unclipped, clipped = results[0.0], results[1.0]
    # d loss / d b_y = d loss / d ŷ summed over the single step: 1e4 without clipping, 100 with.
    np.testing.assert_allclose(np.abs(unclipped["b_y"][...]), 1e4)
    np.testing.assert_allclose(np.abs(clipped["b_y"][...]), 100.0)
    # d loss / d b (LSTM bias) = derivative into the pre-activations (one step, one layer).
    assert np.abs(unclipped["layers"][0]["b"][...]).max() > 10.0
    assert np.abs(clipped["layers"][0]["b"][...]).max() <= 10.0 + 1e-5


def test_paper_parameter_counts():
  """3 x 400 paper networks: prediction ~3.4M, synthesis ~3.7M (alphabet of 57 + padding + unknown)."""
  pred = networks.count_params(networks.build_network(defaults.base_config("prediction").model, 0, 0))
  synth = networks.count_params(networks.build_network(defaults.base_config("synthesis").model, 59, 0))
  assert 3.3e6 < pred < 3.5e6, pred
  assert 3.6e6 < synth < 3.8e6, synth


def test_model_config_is_typed_frozen_and_covers_every_model_field():
  """The NNX modules read a frozen ModelConfig holding exactly the fields of `config.model` (a new field cannot be
  silently dropped on the way to the network); a group lacking one is a ValueError naming it."""
  group = defaults.model_config("synthesis")
  typed = networks.ModelConfig.of(group)
  assert {f.name for f in dataclasses.fields(networks.ModelConfig)} == set(group.keys())
  assert typed.hidden_size == group.hidden_size and networks.ModelConfig.of(typed) is typed
  with pytest.raises(dataclasses.FrozenInstanceError):
    typed.hidden_size = 3
  del group["remat"]
  with pytest.raises(ValueError, match="lacks remat"):
    networks.ModelConfig.of(group)
  cfg = defaults.base_config("synthesis")
  cfg.optim.clip_mode = "global_norm"
  off = networks.model_config(cfg)
  assert (off.lstm_clip, off.output_clip) == (0.0, 0.0) and cfg.model.lstm_clip > 0  # the config is not changed


if __name__ == "__main__":
  pytest.main([__file__])


@pytest.mark.parametrize("rho", [-0.8, 0.0, 0.6])
def test_mdn_sample_matches_the_mixture_mean_covariance_and_weights(rho):
  """Many draws from a 2-component mixture: component weights, per-component mean and covariance (σ1, σ2, ρ: a sign
  error in ρ flips the covariance), and the end-of-stroke rate."""
  n = 40_000
  mu = np.array([[1.0, -2.0], [-8.0, 0.5]], np.float32)
  sigma = np.array([[0.5, 2.0], [1.5, 0.3]], np.float32)
  rhos = np.array([rho, -rho / 2], np.float32)
  params = mdn.MixtureParams(
    log_pi=jnp.broadcast_to(jnp.log(jnp.array([0.3, 0.7])), (n, 2)),
    mu=jnp.broadcast_to(mu, (n, 2, 2)),
    log_sigma=jnp.broadcast_to(jnp.log(sigma), (n, 2, 2)),
    rho_hat=jnp.broadcast_to(jnp.arctanh(rhos), (n, 2)),
    eos_logit=jnp.full((n,), np.log(0.2 / 0.8), jnp.float32),
  )
  x = np.asarray(mdn.sample(jax.random.key(3), params))
  assert abs(x[:, 2].mean() - 0.2) < 0.01
  # The components are far apart in x: assign each draw to the nearer mean in x1 (overlap < 0.1%).
  first = x[:, 0] > -1.0
  assert abs(first.mean() - 0.3) < 0.01
  for j, pick in enumerate([first, ~first]):
    pts = x[pick, :2]
    np.testing.assert_allclose(pts.mean(axis=0), mu[j], atol=0.05)
    cov = np.cov(pts.T)
    want = np.array(
      [[sigma[j, 0] ** 2, rhos[j] * sigma[j, 0] * sigma[j, 1]], [rhos[j] * sigma[j, 0] * sigma[j, 1], sigma[j, 1] ** 2]]
    )
    np.testing.assert_allclose(cov, want, atol=0.06 * max(sigma[j]) ** 2)
    corr = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    assert abs(corr - rhos[j]) < 0.03
