"""Style fidelity: the hand features, the retrieval protocol, the shipped hand encoder on synthetic hands, training."""

import os

import chex
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import test_evaluate
from flax import nnx

from configs import synthesis as synthesis_config
from handwriting_jax.config import defaults
from handwriting_jax.data import hershey
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.evaluation import encoder_training as trainer
from handwriting_jax.evaluation import fidelity as fid
from handwriting_jax.evaluation import report as report_lib

TEXTS = (
  "the garden gate was open",
  "bring a coat and an umbrella",
  "seven lazy cats slept here",
  "many boxes of old letters",
  "quiet rooms hold no secrets",
  "a jug of milk and bread",
)


def _offsets(strokes):
  return strokes_lib.strokes_to_offsets([np.asarray(s, np.float64) for s in strokes]).astype(np.float32)


def test_features_follow_the_ink_with_jumps_between_strokes():
  # A tick, two horizontal strokes 4 units apart, a tick: symmetric, so the fitted baseline is flat; the ink's y
  # spans 0..2 (the 5-95% range), so lengths are in units of 2.
  line = _offsets([[[0, 0], [0, 2]], [[0, 0], [4, 0]], [[8, 0], [12, 0]], [[12, 0], [12, 2]]])
  f = fid.line_features(line)
  chex.assert_shape(f, (None, fid.NUM_FEATURES))
  lifts = np.flatnonzero(f[:, 5] == 1)
  assert len(lifts) == 3
  np.testing.assert_allclose(f[lifts, 3:5], [[0.0, -1.0], [2.0, 0.0], [0.0, 0.0]], atol=1e-5)  # jumps / height
  ink = np.delete(f, lifts, axis=0)
  assert len(ink) == 2 * 10 + 2 * 20  # 1 and 2 heights of ink, one row per 0.1
  np.testing.assert_allclose(ink[:10, :2], [[0.0, 1.0]] * 10, atol=1e-6)  # up the first tick
  np.testing.assert_allclose(ink[10:50, :2], [[1.0, 0.0]] * 40, atol=1e-6)  # then rightwards
  np.testing.assert_allclose(ink[9, 2], 1.0, atol=1e-6)  # top of the tick: one height above the median y (0)


def test_features_ignore_size_rate_and_baseline_tilt():
  rng = np.random.default_rng(0)
  writer = hershey.make_writer(rng, hershey.font_list("cursive"), 30.0)  # a dense pen, as IAM-OnDB's
  line = hershey.write_line("handwriting in jax", writer, rng, 9.0)
  f = fid.line_features(line)
  np.testing.assert_allclose(fid.line_features(line * np.array([3.0, 3.0, 1.0], np.float32)), f, atol=1e-4)
  pts = strokes_lib.offsets_to_points(line)
  drift = pts.copy()
  drift[:, 1] += 0.08 * pts[:, 0]  # a baseline climbing across the page
  tilted = strokes_lib.points_to_offsets(drift)
  assert len(fid.line_features(tilted)) == len(f)
  np.testing.assert_allclose(fid.line_features(tilted)[:, 2:], f[:, 2:], atol=1e-4)  # heights and jumps
  fewer = strokes_lib.strokes_to_offsets(strokes_lib.downsample_strokes(strokes_lib.offsets_to_strokes(line), 3))
  assert abs(len(fid.line_features(fewer)) - len(f)) <= 0.08 * len(
    f
  )  # about the same ink length at a third of the points


@pytest.mark.parametrize(
  "line",
  [np.zeros((1, 3)), np.array([[0, 0, 0], [0.0, 0.0, 1]]), np.array([[0, 0, 0], [np.nan, 1, 1]]), np.zeros((5, 2))],
)
def test_lines_too_small_or_broken_are_a_clear_error(line):
  with pytest.raises(fid.FidelityError):
    fid.line_features(np.asarray(line, np.float32))
  assert not fid.judgeable(np.asarray(line, np.float32)) if np.asarray(line).shape[-1:] == (3,) else True


def test_trial_picks_two_lines_of_forms_with_different_texts():
  ids = [f"a0{k}-000{w}-0{n}" for k in range(6) for w in "uv" for n in range(3)] + ["z01-000u-01"]
  trial = fid.choose_trial(ids, 6, np.random.default_rng(0))
  assert len({fid.text_of(f) for f in trial.forms}) == 6  # never two writers of the same text
  for form, q, g in zip(trial.forms, trial.query, trial.gallery):
    assert q != g and fid.form_of(ids[q]) == form == fid.form_of(ids[g])
  with pytest.raises(fid.FidelityError, match="7 forms"):
    fid.choose_trial(ids, 7, np.random.default_rng(0))  # z01-000u has one line only
  texts = ["a line of a few words, long enough"] * len(ids)
  for k in range(6):  # form a0k-000u keeps only line 0 long enough: it cannot take part
    texts[ids.index(f"a0{k}-000u-01")] = texts[ids.index(f"a0{k}-000u-02")] = "one word."
  trial = fid.choose_trial(ids, 6, np.random.default_rng(0), texts)
  assert all(f.endswith("v") for f in trial.forms)


def test_ranks_match_a_brute_force_count():
  rng = np.random.default_rng(1)
  encoder = fid.HandEncoder(fid.EncoderConfig(channels=(8, 8), dim=4), rngs=nnx.Rngs(0))
  writer = hershey.make_writer(rng, hershey.font_list("cursive"), 10.0)
  lines = [hershey.write_line(t, writer, rng, 9.0) for t in TEXTS] + [np.zeros((1, 3), np.float32)]
  gallery = fid.embed_lines(encoder, lines[:4])
  truth = np.array([0, 1, 2, 3, 0, 1, 2])
  ranks = fid.retrieval_ranks(encoder, lines, gallery, truth)
  emb = fid.embed_lines(encoder, lines[:6])
  for i in range(6):
    sims = emb[i] @ gallery.T
    assert ranks[i] == 1 + np.sum(sims > sims[truth[i]])
  assert ranks[6] == 4  # too small to judge: last
  np.testing.assert_array_equal(fid.rank1_hits(emb, gallery, truth[:6]), ranks[:6] == 1)


def _synthetic_hands(num_writers: int, lines_each: int, seed: int):
  """Lines of Hershey writers with their own slant, spacing and joins: (lines, ids as IAM-style line ids)."""
  rng = np.random.default_rng(seed)
  lines, ids = [], []
  for w in range(num_writers):
    writer = hershey.make_writer(rng, hershey.font_list("cursive"), 10.0)
    for k in range(lines_each):
      lines.append(hershey.write_line(TEXTS[(w + k) % len(TEXTS)], writer, rng, 9.0))
      ids.append(f"s{w:02d}-000-{k:02d}")
  return lines, ids


def test_shipped_encoder_finds_hands_and_not_scribbles():
  encoder, info = fid.load_encoder()
  assert info["ceiling"]["rank1_n20"] > 0.5  # measured on IAM-OnDB's held-out forms when it was trained
  lines, ids = _synthetic_hands(20, 2, seed=3)
  emb = fid.embed_lines(encoder, lines)
  # Synthetic hands differ less than people's (one font; slant, proportions, spacing, joins), and the encoder never
  # saw them: well above chance (0.05) all the same, and a line is nearer its own hand's other line than others'.
  assert fid.ceiling(emb, ids, 20, draws=10) >= 0.2
  sims = emb[0::2] @ emb[1::2].T
  assert np.mean(np.diag(sims)) > np.mean(sims[~np.eye(20, dtype=bool)]) + 0.08
  rng = np.random.default_rng(4)
  scribbles = []
  for _ in range(20):  # random walks with pen lifts, a line's length
    steps = np.cumsum(rng.normal(0, 1, (300, 2)), axis=0) * 0.3 + rng.normal(0, 3, (300, 2))
    eos = (rng.random(300) < 0.05).astype(np.float32)
    scribbles.append(np.concatenate([np.diff(steps, axis=0, prepend=steps[:1]), eos[:, None]], 1).astype(np.float32))
  gallery = emb[1::2]
  hits = fid.rank1_hits(fid.embed_lines(encoder, scribbles), gallery, np.arange(20))
  assert hits.mean() <= 0.2  # about chance


def test_saved_encoder_round_trips_and_bad_files_are_clear(tmp_path):
  encoder = fid.HandEncoder(fid.EncoderConfig(channels=(8, 8), dim=4), rngs=nnx.Rngs(0))
  path = str(tmp_path / "enc.npz")
  fid.save_encoder(encoder, path, {"note": "test"})
  again, info = fid.load_encoder(path)
  line = _synthetic_hands(1, 1, seed=0)[0][0]
  np.testing.assert_array_equal(fid.embed_lines(again, [line]), fid.embed_lines(encoder, [line]))
  assert info == {"note": "test"}
  (tmp_path / "bad.npz").write_bytes(b"not a zip")
  for bad in (str(tmp_path / "bad.npz"), str(tmp_path / "missing.npz")):
    with pytest.raises(fid.FidelityError, match=os.path.basename(bad)):
      fid.load_encoder(bad)


def test_training_learns_to_tell_synthetic_hands_apart():
  lines, ids = _synthetic_hands(8, 4, seed=5)
  feats = trainer.features_at_rates(lines)
  labels = np.array([int(i[1:3]) for i in ids])
  model = trainer.Classifier(fid.EncoderConfig(channels=(16, 16, 16), dim=16), 8, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
  rng = np.random.default_rng(0)
  losses = []
  for _ in range(60):
    picks = rng.integers(len(lines), size=16)
    f, m = trainer.random_crops(feats, picks, 96, rng)
    loss, _ = trainer.train_step(
      model, optimizer, jnp.asarray(f), jnp.asarray(m), jnp.asarray(labels[picks]), margin=0.2, scale=10.0
    )
    losses.append(float(loss))
  assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
  emb = fid.embed_lines(model.encoder, lines)
  assert fid.ceiling(emb, ids, 8, draws=10) > 2 / 8  # lines of the same hand are nearer (chance 1/8)


def test_evaluate_reports_fidelity_beside_cer(tmp_path):
  config = synthesis_config.get_config("tiny")
  config.sample.max_steps_per_char = 6
  config.data.embedded.num_writers, config.data.embedded.valid_writers = 3, 0  # 16 validation lines by 3 hands
  config.data.embedded.min_words, config.data.embedded.max_words = 5, 6  # lines of a few words (20+ characters)
  workdir = str(tmp_path / "w")
  test_evaluate.save_untrained_writer(workdir, config)
  settings = report_lib.Fidelity(forms=3, sentences=1, bias=0.5, adapt_lines=2)
  report = report_lib.evaluate(
    workdir, None, biases=[0.5], seeds=1, out_dir=str(tmp_path / "e"), nll=False, fidelity=settings
  )
  f = report["fidelity"]
  assert f["forms"] == 3 and len(f["per_form"]) == 3 and f["chance"] == pytest.approx(1 / 3)
  assert 0.0 <= f["rank1"] <= 1.0 and 0.0 <= f["ceiling"] <= 1.0 and f["cer"] > 0.5  # a random network scribbles
  assert all(len(r["lines"]) == 1 and os.path.isfile(r["lines"][0]["image"]) for r in f["per_form"])
  assert os.path.isfile(f["sheet"]) and "fidelity" in report_lib.summary(report)
  adapted = f["adapted"]  # each hand learnt from two of its lines (the prime first if it can), never its gallery line
  for row, primed_row in zip(adapted["per_form"], f["per_form"]):
    assert row["form"] == primed_row["form"] and row["prime_line"] == primed_row["prime_line"]
    assert 1 <= len(row["adapted_on"]) <= 2 and row["gallery_line"] not in row["adapted_on"]
    assert all(fid.form_of(i) == row["form"] for i in row["adapted_on"])
  assert len(adapted["adapt_seconds"]) == 3 and "adapted" in report_lib.summary(report)
  for bad, flag in (
    (report_lib.Fidelity(forms=1), "fidelity_forms"),
    (report_lib.Fidelity(adapt_lines=11), "fidelity_adapt_lines"),
  ):
    with pytest.raises(report_lib.EvaluateError, match=flag):
      report_lib.evaluate(workdir, None, biases=[0.5], seeds=1, out_dir=str(tmp_path / "e2"), fidelity=bad)


def test_embedded_ids_name_their_writer():
  cfg = defaults.data_config().embedded
  cfg.num_lines, cfg.valid_lines = 12, 6
  train_writers, valid_writers = hershey.corpus_writers(cfg)
  assert len(train_writers) == 12 and len(valid_writers) == 6
  assert all(0 <= w < cfg.num_writers for w in train_writers)
  assert all(0 <= w < cfg.num_writers + cfg.valid_writers for w in valid_writers)
  assert any(w >= cfg.num_writers for w in valid_writers) or cfg.valid_new_writer_fraction < 0.2


def test_training_on_too_few_forms_is_a_clear_error(tmp_path):
  # The IAM-OnDB fixture (hand-made files in the data set's format): one training form with two lines.
  fixture = os.path.join(os.path.dirname(__file__), "fixtures", "iam")
  out = str(tmp_path / "enc.npz")
  with pytest.raises(fid.FidelityError, match="1 forms with two judgeable lines"):
    trainer.train(fixture, out, steps=2, batch=4, crop=32, learning_rate=1e-3, margin=0.2, scale=10.0, seed=0)
  assert not os.path.exists(out)


def test_without_the_validation_data_fidelity_says_why(tmp_path):
  config = synthesis_config.get_config("tiny")
  config.sample.max_steps_per_char = 4
  config.data.source, config.data.iam_path = "iam", str(tmp_path / "not-here")
  test_evaluate.save_untrained_writer(str(tmp_path / "w"), config)
  report = report_lib.evaluate(
    str(tmp_path / "w"),
    None,
    biases=[1.0],
    seeds=1,
    out_dir=str(tmp_path / "e"),
    nll=False,
    fidelity=report_lib.Fidelity(forms=3, sentences=1),
  )
  assert "--iam_path" in report["fidelity"]["unavailable"]
  assert "fidelity not measured" in report_lib.summary(report)
