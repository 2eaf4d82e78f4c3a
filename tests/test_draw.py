"""Tests for drawing (handwriting_jax/data/draw.py) and the data preview (handwriting_jax/preview.py)."""

import itertools
import re
import types
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib import image as mpimg
from test_strokes import hand_line as _hand_line  # the same three-stroke line the strokes tests use

from handwriting_jax import preview
from handwriting_jax.data import draw

SVG_NS = "{http://www.w3.org/2000/svg}"


def _wavy_line(seed=0, n=60, strokes=3):
  """A smooth random line of `strokes` strokes (for the picture tests)."""
  rng = np.random.default_rng(seed)
  t = np.linspace(0, 6 * np.pi, n)
  dx = 1.0 + 0.3 * rng.random(n)
  dy = 3.0 * np.cos(t) * 0.3
  eos = np.zeros(n)
  eos[np.linspace(0, n - 1, strokes + 1).astype(int)[1:]] = 1.0
  return np.stack([dx, dy, eos], 1).astype(np.float32)


def _svg_strokes(svg_text):
  """Every <path> of the SVG as an [n, 2] array of its (x, y) points, in document order."""
  root = ET.fromstring(svg_text.encode("utf-8"))
  out = []
  for p in root.iter(SVG_NS + "path"):
    nums = re.findall(r"(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)", p.get("d"))
    out.append(np.array(nums, float))
  return root, out


def _read_png(path):
  img = mpimg.imread(str(path))
  assert img.ndim == 3 and img.shape[2] in (3, 4)
  assert img.shape[0] > 20 and img.shape[1] > 20
  return img


def _ink_fraction(img):
  """Share of pixels noticeably darker than white."""
  return float(np.mean(img[..., :3].mean(-1) < 0.9))


# ----------------------------------------------------------------------------------------------------------
# SVG


def test_svg_one_path_per_stroke_with_flipped_coordinates(tmp_path):
  line, want = _hand_line()
  path = tmp_path / "one.svg"
  svg = draw.lines_to_svg([line], path, margin=1.0)
  assert path.read_text(encoding="utf-8") == svg
  root, got = _svg_strokes(svg)
  assert root.tag == SVG_NS + "svg"
  assert len(got) == 3
  for g, w in zip(got, want):
    if len(w) == 1:  # a dot is a zero-length segment
      assert len(g) == 2
      np.testing.assert_allclose(g[0], g[1])
      g = g[:1]
    np.testing.assert_allclose(g[:, 0] - g[0, 0], w[:, 0] - w[0, 0], atol=0.01)
    np.testing.assert_allclose(g[:, 1] - g[0, 1], -(w[:, 1] - w[0, 1]), atol=0.01)  # y flipped
  # All strokes share one translation (the page layout), and the viewBox holds the content plus the margin.
  shift = got[0][0] - want[0][0] * [1, -1]
  for g, w in zip(got, want):
    np.testing.assert_allclose(g[0], w[0] * [1, -1] + shift, atol=0.01)
  x0, y0, w_, h_ = (float(v) for v in root.get("viewBox").split())
  allp = np.concatenate(got)
  np.testing.assert_allclose([allp[:, 0].min() - x0, allp[:, 1].min() - y0], [1.0, 1.0], atol=0.02)
  np.testing.assert_allclose([x0 + w_ - allp[:, 0].max(), y0 + h_ - allp[:, 1].max()], [1.0, 1.0], atol=0.02)


def test_svg_page_stacks_lines_without_overlap():
  lines = [_wavy_line(s, strokes=s + 1) for s in range(3)]
  root, got = _svg_strokes(draw.lines_to_svg(lines))
  groups = root.findall(f".//{SVG_NS}g[@id]")
  assert [g.get("id") for g in groups] == ["line-0", "line-1", "line-2"]
  assert [len(g.findall(SVG_NS + "path")) for g in groups] == [1, 2, 3]
  assert len(got) == 6
  per_line = [np.concatenate(got[0:1]), np.concatenate(got[1:3]), np.concatenate(got[3:6])]
  for upper, lower in itertools.pairwise(per_line):
    assert upper[:, 1].max() < lower[:, 1].min()  # SVG y grows downwards: line i+1 is below line i


def test_svg_fixed_line_spacing():
  line, _ = _hand_line()
  _, got = _svg_strokes(draw.lines_to_svg([line, line], line_spacing=50.0))
  np.testing.assert_allclose(got[3][0] - got[0][0], [0.0, 50.0], atol=0.01)


def test_svg_bad_input():
  with pytest.raises(ValueError, match=r"lines\[1\]"):
    draw.lines_to_svg([_wavy_line(), np.zeros((4, 2))])
  with pytest.raises(ValueError, match="single"):
    draw.lines_to_svg(_wavy_line())
  with pytest.raises(ValueError, match="empty"):
    draw.lines_to_svg([])


# ----------------------------------------------------------------------------------------------------------
# PNG pictures


def test_save_lines_png(tmp_path):
  lines = [_wavy_line(s) for s in range(3)]
  path = tmp_path / "lines.png"
  draw.save_lines_png(lines, ["one", "two", "three"], path, dpi=60)
  img = _read_png(path)
  assert 0.002 < _ink_fraction(img) < 0.5
  assert img.shape[1] > img.shape[0]  # three wide, short lines
  draw.save_lines_png(lines[:1], None, tmp_path / "nocap.png", dpi=60, color_strokes=True)
  _read_png(tmp_path / "nocap.png")
  with pytest.raises(ValueError, match="texts"):
    draw.save_lines_png(lines, ["one"], tmp_path / "x.png")
  with pytest.raises(ValueError, match="labels"):
    draw.save_lines_png(lines, ["a", "b", "c"], tmp_path / "x.png", labels=[1])
  with pytest.raises(ValueError, match=r"lines\[0\]"):
    draw.save_lines_png([np.zeros((3, 4))], ["a"], tmp_path / "x.png")


def test_plot_attention(tmp_path):
  text = "ab c"
  t = np.arange(30)[:, None]
  phi = np.exp(-0.5 * ((t / 30 * 4 - np.arange(4)[None]) / 0.4) ** 2)
  path = tmp_path / "att.png"
  draw.plot_attention(phi, text, path, dpi=60)
  _read_png(path)
  draw.plot_attention(phi, text, tmp_path / "att_line.png", line_Tx3=_wavy_line(), dpi=60, title="t")
  _read_png(tmp_path / "att_line.png")
  with pytest.raises(ValueError, match="3 characters"):
    draw.plot_attention(phi, "abc", tmp_path / "x.png")
  with pytest.raises(ValueError, match=r"\[T, U\]"):
    draw.plot_attention(phi[0], text, tmp_path / "x.png")


def _mixture(line, m=3, seed=0):
  rng = np.random.default_rng(seed)
  t = len(line)
  return {
    "pi": rng.dirichlet(np.ones(m), t),
    "mu": line[:, None, :2] + rng.normal(0, 0.3, (t, m, 2)),
    "sigma": np.exp(rng.normal(-0.5, 0.2, (t, m, 2))),
    "rho": np.tanh(rng.normal(0, 0.5, (t, m))),
  }


def test_plot_density(tmp_path):
  line = _wavy_line(n=40)
  path = tmp_path / "dens.png"
  draw.plot_density(line, _mixture(line), np.clip(line[:, 2] * 0.8 + 0.05, 0, 1), path, grid_width=150, dpi=60)
  _read_png(path)


def test_plot_density_bad_input(tmp_path):
  line = _wavy_line(n=40)
  mix, eos = _mixture(line), np.zeros(40)
  with pytest.raises(ValueError, match="'sigma'"):
    draw.plot_density(line, dict(mix, sigma=mix["sigma"][..., 0]), eos, tmp_path / "x.png")
  with pytest.raises(ValueError, match="missing"):
    draw.plot_density(line, {k: mix[k] for k in ("pi", "mu", "sigma")}, eos, tmp_path / "x.png")
  with pytest.raises(ValueError, match="eos_prob_T"):
    draw.plot_density(line, mix, np.zeros(39), tmp_path / "x.png")
  with pytest.raises(ValueError, match="39 steps but the line has 40"):
    draw.plot_density(line, {k: v[:39] for k, v in mix.items()}, eos, tmp_path / "x.png")
  with pytest.raises(ValueError, match="line"):
    draw.plot_density(line[:, :2], mix, eos, tmp_path / "x.png")


def test_density_grid_integrates_to_one_per_step():
  """Each step adds one unit of probability mass (the grid covers the components), at the right place."""
  centres = np.array([[0.0, 0.0], [10.0, 5.0]])
  mix = {
    "pi": np.array([[0.3, 0.7], [1.0, 0.0]]),
    "mu": np.array([[[1.0, 0.0], [-1.0, 2.0]], [[0.0, 0.0]] * 2]),
    "sigma": np.full((2, 2, 2), 0.5),
    "rho": np.array([[0.5, -0.3], [0.0, 0.0]]),
  }
  xs = np.arange(-5.0, 15.0, 0.05)
  ys = np.arange(-5.0, 10.0, 0.05)
  grid = draw.mixture_density_grid(centres, mix, xs, ys)
  np.testing.assert_allclose(grid.sum() * 0.05**2, 2.0, rtol=1e-3)
  j, i = np.unravel_index(np.argmax(grid), grid.shape)
  np.testing.assert_allclose([xs[i], ys[j]], [10.0, 5.0], atol=0.05)  # the sharpest mode: step 1's


def test_density_accepts_saturated_float32_predictions(tmp_path):
  """tanh(ρ̂) and exp(σ̂) of a confident float32 model can round to exactly ±1 and 0: still drawable."""
  line = _wavy_line(n=20)
  mix = _mixture(line)
  mix["rho"][3] = 1.0
  mix["rho"][4] = -1.0
  mix["sigma"][5] = 0.0
  grid = draw.mixture_density_grid(np.cumsum(line[:, :2], 0), mix, np.linspace(0, 30, 60), np.linspace(-5, 5, 20))
  assert np.all(np.isfinite(grid))
  with pytest.raises(ValueError, match="'rho'"):
    draw.mixture_density_grid(np.zeros((20, 2)), dict(mix, rho=mix["rho"] * 1.5), np.arange(3.0), np.arange(3.0))


def test_denormalise_mixture():
  line = _wavy_line(n=5)
  mix = _mixture(line)
  out = draw.denormalise_mixture(mix, scale_2=[2.0, 3.0], shift_2=[1.0, 0.0])
  np.testing.assert_allclose(out["mu"], mix["mu"] * [2.0, 3.0] + [1.0, 0.0])
  np.testing.assert_allclose(out["sigma"], mix["sigma"] * [2.0, 3.0])
  np.testing.assert_allclose(out["rho"], mix["rho"])
  np.testing.assert_allclose(out["pi"], mix["pi"])


def test_save_animation_gif(tmp_path):
  from PIL import Image

  path = tmp_path / "pen.gif"
  draw.save_animation(_wavy_line(n=20), path, max_frames=10, dpi=40)
  with Image.open(path) as im:
    assert im.format == "GIF" and im.n_frames > 1
  with pytest.raises(ValueError, match=r"\.gif or \.html"):
    draw.save_animation(_wavy_line(n=20), tmp_path / "pen.mp4")


# ----------------------------------------------------------------------------------------------------------
# preview


class _Stats:
  """Stand-in for NormStats: raw = normalised * 10."""

  def denormalise(self, line):
    out = np.array(line, np.float32)
    out[:, :2] *= 10.0
    return out


def _fake_dataset():
  lines = [_wavy_line(s) / np.float32([10, 10, 1]) for s in range(5)]
  split = types.SimpleNamespace(strokes=lines, texts=[f"line {i}" for i in range(5)])
  return types.SimpleNamespace(train=split, valid=split, stats=_Stats())


def test_preview_pick_lines():
  ds = _fake_dataset()
  lines, texts, idx = preview.pick_lines(ds, "train", num_lines=3, start=1)
  assert texts == ["line 1", "line 2", "line 3"] and idx == [1, 2, 3]
  np.testing.assert_allclose(lines[0], _wavy_line(1), rtol=1e-5)  # de-normalised
  lines, texts, idx = preview.pick_lines(ds, "valid", num_lines=10, shuffle_seed=0)
  assert texts == [f"line {i}" for i in range(5)] and idx == list(range(5))
  with pytest.raises(ValueError, match="start"):
    preview.pick_lines(ds, "train", start=7)
  with pytest.raises(ValueError, match="split"):
    preview.pick_lines(ds, "test")


def test_preview_write(tmp_path):
  lines, texts, _ = preview.pick_lines(_fake_dataset(), num_lines=2)
  written = preview.write_preview(lines, texts, tmp_path / "p.svg", labels=["a", "b"])
  assert written == [str(tmp_path / "p.svg"), str(tmp_path / "p.png")]
  _read_png(tmp_path / "p.png")
  assert len(_svg_strokes((tmp_path / "p.svg").read_text())[1]) == 6
  with pytest.raises(ValueError, match="--out"):
    preview.write_preview(lines, texts, tmp_path / "p.jpg")


def test_preview_run_on_the_embedded_corpus(tmp_path):
  """The command line's function end to end, on a tiny embedded corpus."""
  config = preview.fallback_config()
  config.data.embedded.num_lines = 6
  config.data.embedded.valid_lines = 2
  config.data.cache_dir = str(tmp_path / "cache")
  written = preview.run(config, str(tmp_path / "lines.png"), num_lines=4, start=1)
  assert written == [str(tmp_path / "lines.png")]
  _read_png(tmp_path / "lines.png")
