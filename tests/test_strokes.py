"""Tests of handwriting_jax.data.strokes: offset format, preprocessing steps, NormStats."""

import chex
import numpy as np
import pytest

from handwriting_jax.config import defaults
from handwriting_jax.data import strokes


def random_points(rng, t=50, scale=3000):
  """Absolute integer points [t, 3] with a few strokes (eos on each stroke's last point and the last point)."""
  p = np.zeros((t, 3), np.float32)
  p[:, :2] = rng.integers(-scale, scale, size=(t, 2))
  p[:, 2] = rng.random(t) < 0.2
  p[-1, 2] = 1
  return p


def hand_line():
  """Three strokes: an L (3 points), a dot (1 point), a diagonal (2 points). Returns (line, strokes)."""
  line = np.array(
    [
      [1.0, 2.0, 0.0],  # (1, 2)
      [0.0, -2.0, 0.0],  # (1, 0)
      [3.0, 0.0, 1.0],  # (4, 0)  end of stroke 1
      [1.0, 5.0, 1.0],  # (5, 5)  a dot
      [2.0, -5.0, 0.0],  # (7, 0)
      [1.5, 4.0, 1.0],  # (8.5, 4)
    ],
    np.float32,
  )
  want = [np.array([[1, 2], [1, 0], [4, 0]]), np.array([[5, 5]]), np.array([[7, 0], [8.5, 4]])]
  return line, want


def test_offsets_round_trip_exact():
  rng = np.random.default_rng(0)
  for _ in range(20):
    p = random_points(rng)
    off = strokes.points_to_offsets(p)
    chex.assert_shape(off, p.shape)
    assert off.dtype == np.float32
    np.testing.assert_array_equal(off[0], [0.0, 0.0, p[0, 2]])  # origin = first point
    np.testing.assert_array_equal(strokes.offsets_to_points(off, origin=p[0, :2]), p)
    origin = (-17.0, 250.0)
    np.testing.assert_array_equal(strokes.offsets_to_points(strokes.points_to_offsets(p, origin), origin), p)
    shifted = p.copy()
    shifted[:, :2] -= p[0, :2]  # a line that starts at the origin round-trips with the defaults
    np.testing.assert_array_equal(strokes.offsets_to_points(strokes.points_to_offsets(shifted)), shifted)


def test_offsets_are_differences():
  p = np.array([[10, 20, 0], [13, 18, 1], [30, 5, 0], [31, 5, 1]], np.float32)
  np.testing.assert_array_equal(strokes.points_to_offsets(p), [[0, 0, 0], [3, -2, 1], [17, -13, 0], [1, 0, 1]])


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match=r"\[T, 3\]"):
    strokes.points_to_offsets(np.zeros((0, 3)))
  with pytest.raises(ValueError, match=r"\[T, 3\]"):
    strokes.offsets_to_points(np.zeros((4, 2)))


def test_strokes_round_trip_and_single_point_stroke():
  s = [np.array([[0.0, 0.0], [1.0, 2.0]]), np.array([[5.0, 5.0]]), np.array([[7.0, 1.0], [8.0, 0.0]])]
  p = strokes.strokes_to_points(s)
  np.testing.assert_array_equal(p[:, 2], [0, 1, 1, 0, 1])
  back = strokes.points_to_strokes(p)
  assert [len(x) for x in back] == [2, 1, 2]
  for a, b in zip(s, back):
    np.testing.assert_array_equal(a, b)
  # Offsets -> strokes starts the line at the origin.
  off = strokes.strokes_to_offsets(s)
  np.testing.assert_array_equal(np.concatenate(strokes.offsets_to_strokes(off)), np.concatenate(s))


def test_offsets_to_strokes_hand_built():
  line, want = hand_line()
  got = strokes.offsets_to_strokes(line)
  assert len(got) == len(want)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, atol=1e-6)


def test_offsets_to_strokes_unfinished_last_stroke():
  line, _ = hand_line()
  line[-1, 2] = 0.0  # the last stroke has no eos (a sample cut at its length cap)
  got = strokes.offsets_to_strokes(line)
  assert [len(s) for s in got] == [3, 1, 2]
  np.testing.assert_allclose(got[-1][-1], [8.5, 4.0])


@pytest.mark.parametrize(
  "bad", [np.zeros((5, 2)), np.zeros((5,)), np.zeros((2, 5, 3)), np.zeros((0, 3)), np.array([[0.0, np.nan, 1.0]])]
)
def test_offsets_to_strokes_bad_input(bad):
  with pytest.raises(ValueError, match="line"):
    strokes.offsets_to_strokes(bad)


def test_drop_repeated_points_moves_eos():
  s = [
    np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [2.0, 0.0], [2.0, 0.0], [2.0, 0.0]]),
    np.array([[2.0, 0.0]]),
    np.array([[3.0, 3.0], [4.0, 4.0]]),
  ]
  off = strokes.strokes_to_offsets(s)
  out, removed = strokes.drop_repeated_points(off)
  assert removed == 3  # not the single-point stroke that starts where the last one ended
  p = strokes.offsets_to_points(out)
  np.testing.assert_array_equal(p, [[0, 0, 0], [1, 1, 0], [2, 0, 1], [2, 0, 1], [3, 3, 0], [4, 4, 1]])
  same, none = strokes.drop_repeated_points(out)
  assert none == 0
  np.testing.assert_array_equal(same, out)


def test_split_jumps():
  s = [np.array([[0.0, 0.0], [5.0, 0.0], [500.0, 0.0], [505.0, 0.0]]), np.array([[0.0, 0.0], [1.0, 1.0]])]
  off = strokes.strokes_to_offsets(s)  # the pen-up move back to (0, 0) is no jump
  out, jumps = strokes.split_jumps(off, threshold=100.0)
  assert jumps == 1
  np.testing.assert_array_equal(out[:, 2], [0, 1, 0, 1, 0, 1])
  np.testing.assert_array_equal(out[:, :2], off[:, :2])
  assert [len(x) for x in strokes.offsets_to_strokes(out)] == [2, 2, 2]
  assert strokes.count_jumps(off, 100.0) == 1
  assert strokes.count_jumps(off, 1000.0) == 0


@pytest.mark.parametrize("mode,expect_dropped", [("split", False), ("drop", True)])
def test_preprocess_line_jump_modes(mode, expect_dropped):
  settings = strokes.Preprocessing(jump_threshold=100.0, jump_mode=mode)
  off = strokes.strokes_to_offsets([np.array([[0.0, 0.0], [5.0, 0.0], [500.0, 0.0], [505.0, 0.0]])])
  line, counts = strokes.preprocess_line(off, settings)
  if expect_dropped:
    assert line is None and counts["dropped_jump_lines"] == 1
  else:
    assert counts["split_jumps"] == 1
    np.testing.assert_array_equal(line[:, 2], [0, 1, 0, 1])
    np.testing.assert_array_equal(line[:, :2], off[:, :2])  # only the pen state changes


def test_preprocess_line_max_points():
  off = strokes.strokes_to_offsets([np.stack([np.arange(10.0), np.zeros(10)], axis=1)])
  line, counts = strokes.preprocess_line(off, strokes.Preprocessing(max_points=9))
  assert line is None and counts["dropped_long_lines"] == 1
  line, counts = strokes.preprocess_line(off, strokes.Preprocessing(max_points=10))
  chex.assert_shape(line, (10, 3))


def test_smoothing_reduces_noise_and_keeps_lengths():
  rng = np.random.default_rng(1)
  x = np.linspace(0, 100, 60)
  clean = np.stack([x, 0.5 * x], axis=1)
  noisy = clean + rng.normal(scale=1.0, size=clean.shape)
  short = np.array([[0.0, 0.0], [1.0, 3.0], [2.0, 0.0]])  # shorter than the window, longer than the order
  tiny = np.array([[0.0, 0.0], [1.0, 3.0]])  # too short for an order-3 fit: unchanged
  out = strokes.smooth_strokes([noisy, short, tiny], window=7, order=2)
  assert [len(s) for s in out] == [60, 3, 2]
  assert np.abs(out[0] - clean).mean() < 0.7 * np.abs(noisy - clean).mean()
  np.testing.assert_array_equal(out[2], tiny)


def test_align_removes_baseline_slope_and_slant():
  # Upright vertical bars along a baseline with slope 0.2 -> rotated flat; then bars slanted 30° -> upright.
  bars = [np.array([[10.0 * i, 0.0], [10.0 * i, 8.0], [10.0 * i, 16.0]]) for i in range(10)]
  theta = np.arctan(0.2)
  rot = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
  tilted = [b @ rot for b in bars]
  out = strokes.align_strokes(tilted)
  bottoms = np.array([s[0] for s in out])
  assert abs(np.polyfit(bottoms[:, 0], bottoms[:, 1], 1)[0]) < 0.05  # baseline flat again
  shear = np.tan(np.deg2rad(30))
  slanted = [np.stack([b[:, 0] + shear * b[:, 1], b[:, 1]], axis=1) for b in bars]
  out = strokes.align_strokes(slanted)
  for s in out:
    np.testing.assert_allclose(s[:, 0], s[0, 0], atol=1e-6)  # every bar vertical


def test_downsample_keeps_every_kth_point_and_each_strokes_ends():
  rng = np.random.default_rng(3)
  sizes = [1, 2, 5, 8, 13]
  strokes_in = [np.cumsum(rng.integers(-9, 10, size=(n, 2)), axis=0).astype(np.float64) for n in sizes]
  out = strokes.downsample_strokes(strokes_in, 3)
  assert [len(s) for s in out] == [1, 2, 3, 4, 5]  # points 0, 3, 6, ... plus the last one when not among them
  for s_in, s_out in zip(strokes_in, out):
    np.testing.assert_array_equal(s_out[0], s_in[0])
    np.testing.assert_array_equal(s_out[-1], s_in[-1])
    expect = sorted(set(range(0, len(s_in), 3)) | {len(s_in) - 1})
    np.testing.assert_array_equal(s_out, s_in[expect])


def test_upsample_strokes_inverts_downsampling_and_follows_a_smooth_pen():
  t = np.arange(31) * 0.2  # a pen tracing two loops, sampled evenly in time, then one point in three kept
  dense = np.stack([np.cos(t) * 10 + t * 3, np.sin(t) * 10], axis=1)
  (coarse,) = strokes.downsample_strokes([dense], 3)
  (fine,) = strokes.upsample_strokes([coarse], 3)
  assert fine.shape == dense.shape
  np.testing.assert_array_equal(strokes.downsample_strokes([fine], 3)[0], coarse)  # every written point is kept
  linear = np.stack([np.interp(np.arange(31) / 3, np.arange(11), coarse[:, i]) for i in range(2)], axis=1)
  rms_fine, rms_linear = (np.sqrt(np.mean(np.sum((a - dense) ** 2, axis=1))) for a in (fine, linear))
  assert rms_fine < 0.25 * rms_linear, (rms_fine, rms_linear)  # the spline is the pen; straight joins are not
  two, one = np.array([[0.0, 0.0], [3.0, 6.0]]), np.array([[5.0, 5.0]])
  np.testing.assert_allclose(strokes.upsample_strokes([two], 3)[0], [[0, 0], [1, 2], [2, 4], [3, 6]], atol=1e-12)
  np.testing.assert_array_equal(strokes.upsample_strokes([one], 3)[0], one)  # a dot stays a dot
  np.testing.assert_array_equal(strokes.upsample_strokes([dense], 1)[0], dense)
  with pytest.raises(ValueError, match="factor"):
    strokes.upsample_strokes([dense], 0)


def test_upsample_line_keeps_the_start_and_the_pen_lifts():
  rng = np.random.default_rng(5)
  strokes_in = [np.cumsum(rng.integers(1, 9, size=(n, 2)), axis=0).astype(np.float64) for n in (4, 1, 6)]
  line = strokes.points_to_offsets(strokes.strokes_to_points(strokes_in), origin=(2.0, -1.0))
  out = strokes.upsample_line(line, 2)
  assert len(out) == 7 + 1 + 11 and out[:, 2].sum() == 3
  got = strokes.points_to_strokes(strokes.offsets_to_points(out, origin=(2.0, -1.0)))
  for s_in, s_out in zip(strokes_in, got):
    np.testing.assert_allclose(s_out[::2], s_in, atol=1e-4)  # the written points, where they were


def test_preprocess_line_downsample_keeps_pen_lifts_and_counts_points_before():
  rng = np.random.default_rng(4)
  strokes_in = [np.cumsum(rng.integers(1, 9, size=(n, 2)), axis=0).astype(np.float64) for n in (7, 4, 10)]
  line = strokes.strokes_to_offsets(strokes_in).astype(np.float32)  # 21 points
  out, _ = strokes.preprocess_line(line, strokes.Preprocessing(downsample=2, max_points=21))
  got = strokes.offsets_to_strokes(out)
  assert len(out) == 4 + 3 + 6 and out[:, 2].sum() == 3  # every stroke kept, its lift where it was
  for s_in, s_out in zip(strokes_in, got):  # the same pen positions (strokes_to_offsets puts the origin first)
    np.testing.assert_allclose(s_out[[0, -1]] + strokes_in[0][0], s_in[[0, -1]])
  dropped, counts = strokes.preprocess_line(line, strokes.Preprocessing(downsample=2, max_points=20))
  assert dropped is None and counts["dropped_long_lines"] == 1  # 21 raw points > 20, though 13 remain


def test_norm_stats_invertible_and_eos_untouched():
  rng = np.random.default_rng(2)
  lines = []
  for t in (30, 50, 7):
    line = np.zeros((t, 3), np.float32)
    line[:, :2] = rng.normal(loc=(5.0, -2.0), scale=(40.0, 25.0), size=(t, 2))
    line[:, 2] = rng.random(t) < 0.3
    lines.append(line)
  for normalise_mean in (False, True):
    stats = strokes.NormStats.fit(lines, normalise_mean=normalise_mean)
    flat = np.concatenate([stats.normalise(x) for x in lines])
    np.testing.assert_allclose(
      np.sqrt(np.mean((flat[:, :2] - flat[:, :2].mean(0) * normalise_mean) ** 2, 0)), 1.0, rtol=1e-5
    )
    if normalise_mean:
      np.testing.assert_allclose(flat[:, :2].mean(0), 0.0, atol=1e-5)
    else:
      np.testing.assert_array_equal(stats.mean, 0.0)
    for line in lines:
      norm = stats.normalise(line)
      np.testing.assert_array_equal(norm[:, 2], line[:, 2])
      np.testing.assert_allclose(stats.denormalise(norm), line, rtol=1e-5, atol=1e-4)
    back = strokes.NormStats.from_arrays({k: v.tolist() for k, v in stats.to_arrays().items()})
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.std, stats.std)
  with pytest.raises(ValueError, match="std"):
    strokes.NormStats.from_arrays({"mean": [0, 0], "std": [1, 0]})


def test_preprocessing_from_a_validated_config():
  """The settings of config.data as the field types (validation validates the values: tests/test_config.py)."""
  cfg = defaults.data_config().to_dict()
  cfg["smoothing"], cfg["jump_threshold"] = "savgol", 100  # an int where the field is a float
  settings = strokes.Preprocessing.from_config(cfg)
  assert settings.smoothing == "savgol" and type(settings.jump_threshold) is float  # a stable cache key


@pytest.mark.parametrize("field,value", [("jump_mode", "lift"), ("smoothing", "gauss")])
def test_preprocessing_refuses_an_unknown_mode(field, value):
  with pytest.raises(ValueError, match=repr(value)):
    strokes.Preprocessing(**{field: value})
