"""Sampler: shapes, the stop rule, bias, determinism, priming, masking and text errors (tiny random networks)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handwriting_jax.config import defaults
from handwriting_jax.data.alphabet import Alphabet, UnknownCharactersError
from handwriting_jax.model import mdn, networks
from handwriting_jax.model import sampling as sample

ALPHABET = Alphabet(" abcdefghijklmnopqrstuvwxyz")


def _model(mode: str, seed: int = 0):
  cfg = defaults.apply_variant(defaults.base_config(mode), "tiny").model
  return networks.build_network(cfg, ALPHABET.size, seed)


@pytest.fixture(scope="module")
def synth():
  return _model("synthesis")


@pytest.fixture(scope="module")
def pred():
  return _model("prediction")


def _prime(n: int = 25, seed: int = 0) -> sample.Prime:
  rng = np.random.default_rng(seed)
  strokes = np.concatenate([rng.normal(size=(n, 2)), (rng.random((n, 1)) < 0.2)], axis=1).astype(np.float32)
  return sample.Prime(strokes, "ab cd")


# ---------------------------------------------------------------------------------------------------------
# Stop rule as a pure function.


def test_window_finished_on_hand_built_phi():
  # Text lengths U = 3 and 2; V = 5 positions (u = 1..5).
  phi = np.array(
    [
      [0.1, 0.2, 0.9, 0.5, 7.0],  # U=3: φ(U+1)=0.5 < max(0.1, 0.2, 0.9): not finished (position 5 ignored)
      [0.1, 0.2, 0.4, 0.5, 0.0],  # U=3: φ(4)=0.5 > all of u<=3: finished
      [0.1, 0.3, 0.3, 9.0, 9.0],  # U=2: φ(3)=0.3 > 0.1 but not > 0.3 (strict): not finished
      [0.1, 0.2, 0.3, 0.0, 0.0],  # U=2: φ(3)=0.3 > 0.1, 0.2: finished, later positions ignored
    ],
    np.float32,
  )
  lengths = np.array([3, 3, 2, 2], np.int32)
  got = np.asarray(jax.jit(sample.window_finished)(phi, lengths))
  np.testing.assert_array_equal(got, [False, True, False, True])


def test_window_finished_follows_a_moving_window():
  # A single Gaussian sliding along the text (κ = t / 4): finished exactly once κ is nearer U+1 than U.
  u_len = 4
  kappa = np.arange(0, 30, dtype=np.float32)[:, None] / 4.0
  phi = sample.window.window_phi(np.ones_like(kappa), np.ones_like(kappa), jnp.asarray(kappa), u_len + 1)
  got = np.asarray(sample.window_finished(phi, np.full((30,), u_len, np.int32)))
  np.testing.assert_array_equal(got, kappa[:, 0] > u_len + 0.5)


# ---------------------------------------------------------------------------------------------------------
# Shapes, masking, caps.


def test_synthesis_shapes_mask_and_caps(synth):
  texts = ["hello world", "abc", "z"]
  out = sample.sample(synth, jax.random.key(0), texts=texts, alphabet=ALPHABET, bias=0.5, max_steps_per_char=6)
  caps = np.array([66, 18, 6])
  t = 66
  u = len("hello world")
  chex.assert_shape(out.strokes_BxTx3, (3, t, 3))
  chex.assert_shape(out.mask_BxT, (3, t))
  chex.assert_shape(out.phi_BxTxU, (3, t, u))
  chex.assert_shape(out.kappa_BxTxK, (3, t, 2))
  chex.assert_shape(out.mixture.mu, (3, t, 3, 2))
  chex.assert_tree_all_finite((out.strokes_BxTx3, out.phi_BxTxU, out.mixture))
  assert out.texts == texts
  assert np.all(out.lengths_B >= 1) and np.all(out.lengths_B <= caps)
  for b in range(3):
    n = out.lengths_B[b]
    np.testing.assert_array_equal(out.mask_BxT[b], np.arange(t) < n)  # a prefix mask
    assert np.all(out.strokes_BxTx3[b, n:] == 0) and np.all(out.phi_BxTxU[b, n:] == 0)
    assert out.strokes_BxTx3[b, n - 1, 2] == 1.0  # the pen is lifted where the line stops
    np.testing.assert_array_equal(out.lines[b], out.strokes_BxTx3[b, :n])
    if not out.finished_B[b]:
      assert n == caps[b]  # a line that the window did not finish ran to its cap
    chex.assert_shape(out.line_phi(b), (n, len(texts[b])))
    mixture, eos = out.line_mixture(b)
    chex.assert_shape(mixture["sigma"], (n, 3, 2))
    np.testing.assert_allclose(mixture["pi"].sum(-1), 1.0, rtol=1e-5)
    assert eos.shape == (n,) and np.all((eos >= 0) & (eos <= 1))


def test_64_lines_of_700_points_in_one_compiled_call(synth, monkeypatch):
  calls = []
  original = sample._sample_scan
  monkeypatch.setattr(sample, "_sample_scan", lambda *a, **k: calls.append(k["num_steps"]) or original(*a, **k))
  texts = [("abc " * 20)[: 5 + i % 40] for i in range(64)]
  out = sample.sample(synth, jax.random.key(1), texts=texts, alphabet=ALPHABET, num_steps=700)
  assert calls == [700]
  chex.assert_shape(out.strokes_BxTx3, (64, 700, 3))
  assert len(out.lines) == 64


def test_prediction_shapes(pred):
  out = sample.sample(pred, jax.random.key(0), num_lines=4, max_steps=30)
  chex.assert_shape(out.strokes_BxTx3, (4, 30, 3))
  np.testing.assert_array_equal(out.lengths_B, [30] * 4)
  assert out.phi_BxTxU is None and not out.finished_B.any()
  chex.assert_tree_all_finite(out.strokes_BxTx3)


def test_denormalised_lines():
  class Stats:  # the NormStats interface used by the sampler
    mean = np.array([0.5, -1.0], np.float32)
    std = np.array([2.0, 3.0], np.float32)

    def denormalise(self, line):
      out = np.array(line, np.float32, copy=True)
      out[:, :2] = out[:, :2] * self.std + self.mean
      return out

  model = _model("prediction")
  raw = sample.sample(model, jax.random.key(3), num_lines=2, max_steps=10)
  den = sample.sample(model, jax.random.key(3), num_lines=2, max_steps=10, stats=Stats())
  np.testing.assert_allclose(den.lines[1][:, :2], raw.lines[1][:, :2] * Stats.std + Stats.mean, rtol=1e-6)
  np.testing.assert_array_equal(den.lines[1][:, 2], raw.lines[1][:, 2])
  np.testing.assert_array_equal(den.strokes_BxTx3, raw.strokes_BxTx3)  # the normalised batch is kept


# ---------------------------------------------------------------------------------------------------------
# Determinism and bias.


def test_same_seed_same_strokes_other_seed_differs(synth):
  kw = {"texts": ["abc de", "fgh"], "alphabet": ALPHABET, "bias": 0.3, "max_steps_per_char": 8}
  a = sample.sample(synth, jax.random.key(7), **kw)
  b = sample.sample(synth, jax.random.key(7), **kw)
  c = sample.sample(synth, jax.random.key(8), **kw)
  np.testing.assert_array_equal(a.strokes_BxTx3, b.strokes_BxTx3)
  np.testing.assert_array_equal(a.phi_BxTxU, b.phi_BxTxU)
  assert not np.array_equal(a.strokes_BxTx3, c.strokes_BxTx3)


def test_large_bias_writes_the_mode():
  # b = 1e3: σ = exp(σ̂ - b) underflows to 0 and π = softmax(π̂ (1 + b)) is one-hot, so every (dx, dy) is the mean
  # of the most probable component whatever the seed; only eos stays random (the paper does not bias it). Line 1
  # has no bias and must not be the mode. A random tiny network has nearly equal π̂, so the output bias spreads
  # them (gaps of 0.5, far above the input-dependent part) to make the most probable component well defined.
  model = _model("synthesis", seed=3)
  model.b_y[...] = model.b_y[...].at[1:4].set(jnp.array([0.0, 0.5, 1.0]))
  kw = {"texts": ["abc de", "abc de"], "alphabet": ALPHABET, "bias": np.array([1e3, 0.0]), "max_steps_per_char": 8}
  runs = [sample.sample(model, jax.random.key(s), **kw) for s in (0, 1)]
  for out in runs:
    n = out.lengths_B[0]
    assert np.all(out.mixture.log_pi[0, :n].max(-1) > -1e-6)  # π is one-hot: the premise of the test
    mu = out.mixture.mu[0, :n]
    j = np.argmax(out.mixture.log_pi[0, :n], axis=-1)
    mode = np.take_along_axis(mu, j[:, None, None], axis=1)[:, 0]
    np.testing.assert_array_equal(out.strokes_BxTx3[0, :n, :2], mode)
    assert np.all(np.exp(out.mixture.log_sigma[0, :n]) == 0)
    m1 = out.lengths_B[1]
    mode1 = np.take_along_axis(
      out.mixture.mu[1, :m1], np.argmax(out.mixture.log_pi[1, :m1], -1)[:, None, None], axis=1
    )[:, 0]
    assert not np.allclose(out.strokes_BxTx3[1, :m1, :2], mode1)
  # Same first input and state, so the first point's (dx, dy) is identical across seeds; the rest of the
  # trajectory agrees up to the first step where the eos draws differ.
  a, b = runs[0].strokes_BxTx3[0], runs[1].strokes_BxTx3[0]
  np.testing.assert_array_equal(a[0, :2], b[0, :2])
  diff = np.flatnonzero(a[:, 2] != b[:, 2])
  upto = diff[0] + 1 if diff.size else min(runs[0].lengths_B[0], runs[1].lengths_B[0])
  np.testing.assert_array_equal(a[:upto, :2], b[:upto, :2])


def test_negative_bias_is_an_error(synth):
  with pytest.raises(sample.SamplingError, match="bias"):
    sample.sample(synth, jax.random.key(0), texts=["ab"], alphabet=ALPHABET, bias=-1.0)


# ---------------------------------------------------------------------------------------------------------
# Priming.


def test_prime_state_equals_teacher_forcing_step_by_step(synth):
  prime = _prime()
  chars, mask, _ = sample.encode_texts(["ab cd xy", "ab cd z"], ALPHABET)
  state, x_next = jax.jit(lambda p: sample.prime_state(synth, p, chars, mask, 2))(prime.strokes_Tx3)
  onehot = synth.one_hot(jnp.asarray(chars))
  inputs = np.concatenate([[sample.START_POINT], prime.strokes_Tx3[:-1]]).astype(np.float32)
  step = jax.jit(lambda s, x: synth.step(s, jnp.broadcast_to(x, (2, 3)), onehot, jnp.asarray(mask))[0])
  ref = synth.initial_state(2)
  for x in inputs:  # the one-step reference, one Python step per prime point
    ref = step(ref, x)
  chex.assert_trees_all_close(state, ref, atol=1e-5, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(x_next), np.broadcast_to(prime.strokes_Tx3[-1], (2, 3)))


def test_primed_sampling_continues_from_the_primed_state(synth):
  prime = _prime()
  out = sample.sample(synth, jax.random.key(0), texts=["xy", "z"], alphabet=ALPHABET, prime=prime, bias=0.2)
  assert out.texts == ["ab cd xy", "ab cd z"]
  chars, mask, _ = sample.encode_texts(out.texts, ALPHABET)

  @jax.jit
  def first_step(strokes):
    state, x0 = sample.prime_state(synth, strokes, chars, mask, 2)
    return mdn.mixture_params(synth.step(state, x0, synth.one_hot(jnp.asarray(chars)), jnp.asarray(mask))[1], 0.2)

  ref = first_step(prime.strokes_Tx3)
  np.testing.assert_allclose(out.mixture.mu[:, 0], ref.mu, atol=1e-5)
  np.testing.assert_allclose(out.mixture.log_pi[:, 0], ref.log_pi, atol=1e-5)
  # Unprimed sampling starts elsewhere.
  plain = sample.sample(synth, jax.random.key(0), texts=["ab cd xy", "ab cd z"], alphabet=ALPHABET, bias=0.2)
  assert not np.allclose(plain.mixture.mu[:, 0], ref.mu, atol=1e-3)
  # The caps follow the new text only, not the prime's.
  assert np.all(out.lengths_B <= 40 * np.array([2, 1]))


def test_conditioning_texts_joins_with_a_space_only_when_known():
  p = sample.Prime(np.zeros((2, 3), np.float32), "ab")
  assert sample.conditioning_texts(["cd"], p, ALPHABET) == ["ab cd"]
  assert sample.conditioning_texts(["cd"], p, Alphabet("abcd")) == ["abcd"]
  assert sample.conditioning_texts(["cd"], None, ALPHABET) == ["cd"]


def test_bad_prime_is_an_error(synth):
  with pytest.raises(sample.SamplingError, match="shape"):
    sample.sample(
      synth, jax.random.key(0), texts=["ab"], alphabet=ALPHABET, prime=sample.Prime(np.zeros((0, 3), np.float32), "ab")
    )


# ---------------------------------------------------------------------------------------------------------
# Text errors.


def test_unknown_characters_are_listed(synth):
  with pytest.raises(UnknownCharactersError, match=r"'Q'.*'é'|'é'.*'Q'"):
    sample.sample(synth, jax.random.key(0), texts=["abc Qd", "é"], alphabet=ALPHABET)


@pytest.mark.parametrize("texts", [[""], ["ab", "   "], []])
def test_empty_text_is_an_error(synth, texts):
  with pytest.raises(sample.SamplingError, match=r"empty|no text"):
    sample.sample(synth, jax.random.key(0), texts=texts, alphabet=ALPHABET)


def test_mode_mismatch_errors(synth, pred):
  with pytest.raises(sample.SamplingError, match="texts"):
    sample.sample(synth, jax.random.key(0), num_lines=2)
  with pytest.raises(sample.SamplingError, match="unconditionally"):
    sample.sample(pred, jax.random.key(0), texts=["ab"], alphabet=ALPHABET)


def test_prime_lead_steps_cut_where_the_window_reaches_the_new_text():
  """Hand-built φ: steps 0-4 read the prime (a stroke ending at step 2, a dot at 3, a lead-in at 4), step 5 reads
  the new text."""
  phi = np.zeros((2, 8, 4), np.float32)
  phi[0, :5, 1] = 1.0  # prime text (prefix of 2 characters)
  phi[0, 5:, 3] = 1.0  # new text from step 5
  phi[1, :, 0] = 1.0  # never reaches the new text
  strokes = np.zeros((2, 8, 3), np.float32)
  strokes[0, [2, 3, 7], 2] = 1.0  # pen lifts: the stroke reaching step 5 starts at step 4 (its lead-in is cut)
  strokes[:, :, 0] = np.arange(8)
  lead = sample.prime_lead_steps(phi, np.array([8, 6]), prefix_len=2)
  np.testing.assert_array_equal(lead, [5, 0])
  samples = sample.Samples(
    strokes_BxTx3=strokes,
    mask_BxT=np.ones((2, 8), np.float32),
    lengths_B=np.array([8, 6], np.int32),
    finished_B=np.array([True, False]),
    lines=[strokes[0], strokes[1, :6]],
    texts=["ab cd", "ab cd"],
    mixture=mdn.MixtureParams(*[np.zeros((2, 8, 1), np.float32)] * 5),
    phi_BxTxU=phi,
    kappa_BxTxK=np.zeros((2, 8, 1), np.float32),
  )
  out = sample.drop_leading_steps(samples, lead)
  np.testing.assert_array_equal(out.lengths_B, [3, 6])
  np.testing.assert_array_equal(out.lines[0][:, 0], [5, 6, 7])
  np.testing.assert_array_equal(out.lines[1], strokes[1, :6])
  np.testing.assert_array_equal(out.phi_BxTxU[0, :3], phi[0, 5:])
  assert not out.strokes_BxTx3[0, 3:].any()


def test_lift_stop_rule_finishes_the_stroke_under_way(synth):
  texts = ["ab", "a", "abc", "b"] * 4
  kw = {"texts": texts, "alphabet": ALPHABET, "max_steps_per_char": 100, "bias": 0.0}
  paper = sample.sample(synth, jax.random.key(0), **kw)
  lift = sample.sample(synth, jax.random.key(0), stop_rule="lift", **kw)
  assert paper.finished_B.all() and lift.finished_B.all()
  for b in range(len(texts)):
    n_p, n_l = paper.lengths_B[b], lift.lengths_B[b]
    assert n_l >= n_p
    # The same draws up to the paper's stop (whose pen lift the paper rule forces), then the stroke goes on
    # until the first lift the network itself samples.
    np.testing.assert_array_equal(lift.strokes_BxTx3[b, : n_p - 1], paper.strokes_BxTx3[b, : n_p - 1])
    np.testing.assert_array_equal(lift.strokes_BxTx3[b, n_p - 1, :2], paper.strokes_BxTx3[b, n_p - 1, :2])
    np.testing.assert_array_equal(lift.strokes_BxTx3[b, n_p - 1 : n_l - 1, 2], 0.0)
    assert lift.strokes_BxTx3[b, n_l - 1, 2] == 1.0
  assert np.any(lift.lengths_B > paper.lengths_B)


def test_line_end_leaves_out_a_stroke_begun_at_the_stop():
  # Lines: 0 running; 1 passed, pen down before; 2 passed, pen lifted before (the point would start a stray
  # stroke); 3 at its cap; 4 already done; 5 passed at the very first step, pen "lifted" by the start point.
  passed = jnp.array([False, True, True, False, True, True])
  point_eos = jnp.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
  prev_eos = jnp.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
  done = jnp.array([False, False, False, False, True, False])
  at_cap = jnp.array([False, False, False, True, False, False])
  first = jnp.array([False, False, False, False, False, True])
  point = jnp.stack([jnp.zeros(6), jnp.zeros(6), point_eos], axis=-1)
  track = sample.start_track(6)
  valid, ends, stopped, eos, _ = sample.line_end("paper", passed, point, prev_eos, done, at_cap, first, track)
  np.testing.assert_array_equal(valid, [True, True, False, True, False, True])
  np.testing.assert_array_equal(ends, [False, True, True, True, False, True])
  np.testing.assert_array_equal(stopped, [False, True, True, False, False, True])
  np.testing.assert_array_equal(eos, [0, 1, 1, 1, 0, 1])
  # "lift": line 1 (pen down) goes on until the network lifts the pen; line 2 has no stroke under way and stops,
  # leaving out its stray point, as "paper" does.
  valid, ends, stopped, eos, _ = sample.line_end("lift", passed, point, prev_eos, done, at_cap, first, track)
  np.testing.assert_array_equal(valid, [True, True, False, True, False, True])
  np.testing.assert_array_equal(ends, [False, False, True, True, False, True])
  lifted = point.at[:, 2].set(1.0)
  valid, ends, _, _, _ = sample.line_end("lift", passed, lifted, prev_eos, done, at_cap, first, track)
  np.testing.assert_array_equal(ends, [False, True, True, True, False, True])


def test_finish_stop_rule_keeps_late_strokes_over_the_ink_and_ends_at_one_clear_of_it():
  # Every line is at x = 10 with its ink's right edge at 10; the window's weight on the last character peaked at 0.8.
  # 0-3: the window has passed and the pen was lifted, the point begins a stroke at 5 (over the ink: a t bar), 10
  # (at the edge), 11 (clear of it: stray) or 5 after three late strokes already; 4, 5: a stroke under way, begun
  # over the ink or as a stray one; 6: the window has not passed, a new stroke at 40 after the peak (stray-flagged);
  # 7: the same before the peak (the last letter).
  passed = jnp.array([True] * 6 + [False] * 2)
  prev_eos = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0])
  dx = jnp.array([-5.0, 0.0, 1.0, -5.0, 30.0, 30.0, 30.0, 30.0])
  point = jnp.stack([dx, jnp.zeros(8), jnp.zeros(8)], axis=-1)
  track = sample.PenTrack(
    jnp.full(8, 10.0), jnp.full(8, 10.0), jnp.array([0, 2, 0, 3, 0, 0, 0, 0]), jnp.full(8, 0.8),
    jnp.array([False] * 5 + [True, False, False]),
  )  # fmt: skip
  phi_last = jnp.array([0.1] * 7 + [0.9])
  no = jnp.zeros(8, bool)
  valid, ends, stopped, eos, out = sample.line_end("finish", passed, point, prev_eos, no, no, False, track, phi_last)
  np.testing.assert_array_equal(valid, [True, True, False, False, True, True, True, True])
  np.testing.assert_array_equal(ends, [False, False, True, True, False, True, False, False])
  np.testing.assert_array_equal(stopped, ends)
  np.testing.assert_array_equal(eos, [0, 0, 1, 1, 0, 1, 0, 0])
  np.testing.assert_array_equal(out.x_B, [5, 10, 10, 10, 40, 40, 40, 40])
  np.testing.assert_array_equal(out.right_B, [10, 10, 10, 10, 40, 40, 40, 40])
  np.testing.assert_array_equal(out.late_B, [1, 3, 0, 3, 0, 0, 0, 0])
  np.testing.assert_allclose(out.peak_B, [0.8] * 7 + [0.9])
  np.testing.assert_array_equal(out.stray_B, [False, False, False, False, False, True, True, False])
  # The raw x offset is dx_scale * dx + dx_shift: scaled by 2 and shifted by 1, line 0's stroke begins at 1 (kept)
  # and line 1's at 11 (stray).
  valid, *_ = sample.line_end("finish", passed, point, prev_eos, no, no, False, track, phi_last, 2.0, 1.0)
  np.testing.assert_array_equal(valid[:2], [True, False])


def test_finish_stop_rule_writes_on_from_where_the_paper_rule_stops(synth):
  texts = ["ab", "a", "abc", "b"] * 4
  kw = {"texts": texts, "alphabet": ALPHABET, "max_steps_per_char": 100, "bias": 0.0}
  paper = sample.sample(synth, jax.random.key(0), **kw)
  finish = sample.sample(synth, jax.random.key(0), stop_rule="finish", **kw)
  for b in range(len(texts)):
    n_p, n_f = paper.lengths_B[b], finish.lengths_B[b]
    assert n_f >= n_p
    np.testing.assert_array_equal(finish.strokes_BxTx3[b, : n_p - 1], paper.strokes_BxTx3[b, : n_p - 1])
    assert finish.strokes_BxTx3[b, n_f - 1, 2] == 1.0
  assert np.any(finish.lengths_B > paper.lengths_B)


def test_unknown_stop_rule_is_an_error(synth):
  with pytest.raises(sample.SamplingError, match="stop rule"):
    sample.sample(synth, jax.random.key(0), texts=["ab"], alphabet=ALPHABET, stop_rule="late")


def test_display_lines_draw_a_downsampled_network_at_the_raw_rate():
  from handwriting_jax.data import strokes

  rng = np.random.default_rng(0)
  lines = [
    np.concatenate([rng.normal(size=(n, 2)), (np.arange(n) % 4 == 3)[:, None]], 1).astype(np.float32) for n in (9, 14)
  ]
  cfg = defaults.apply_variant(defaults.base_config("synthesis"), "iam_small")  # downsample 3, resample "spline"
  shown = sample.display_lines(lines, cfg)
  for line, out in zip(lines, shown):
    np.testing.assert_array_equal(out, strokes.upsample_line(line, 3))
    assert out[:, 2].sum() == line[:, 2].sum() and len(out) > 2 * len(line)  # same pen lifts, 3x the points
  cfg.sample.resample = "none"
  assert all(a is b for a, b in zip(sample.display_lines(lines, cfg), lines))
  full_rate = defaults.base_config("synthesis")  # downsample 1: nothing to restore
  assert all(a is b for a, b in zip(sample.display_lines(lines, full_rate), lines))
  cfg.sample.resample = "bogus"
  with pytest.raises(sample.SamplingError, match="resample"):
    sample.display_lines(lines, cfg)
