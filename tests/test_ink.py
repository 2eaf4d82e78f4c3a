"""Bring your own ink: InkML and SVG files read into y-up pen strokes (points checked against the coordinates
written), the one-line errors for files that are not one line of writing, and the rescaling to a writer's hand."""

import os
import types

import numpy as np
import pytest

from handwriting_jax.data import draw, ink
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.data.strokes import NormStats
from handwriting_jax.serving import app as app_lib
from handwriting_jax.writing import writer as writer_lib

STATS = NormStats(mean=np.zeros(2, np.float32), std=np.array([4.0, 3.0], np.float32))

# "hi" in screen coordinates (y down): the h's stem and its hump in a trace group, the i's stem and its dot.
HI_INKML = """<?xml version="1.0" encoding="UTF-8"?>
<ink xmlns="http://www.w3.org/2003/InkML">
  <annotation type="truth">  hi  </annotation>
  <traceGroup>
    <annotation type="truth">h</annotation>
    <trace>0 0, 0 10, 0 20</trace>
    <trace>0 12, 5 8, 10 12, 10 20</trace>
  </traceGroup>
  <trace>15 10, 15 20</trace>
  <trace>15 5</trace>
</ink>
"""
HI_STROKES_Y_DOWN = [[[0, 0], [0, 10], [0, 20]], [[0, 12], [5, 8], [10, 12], [10, 20]], [[15, 10], [15, 20]], [[15, 5]]]


def _write(tmp_path, name: str, content: str) -> str:
  path = str(tmp_path / name)
  with open(path, "w", encoding="utf-8") as f:
    f.write(content)
  return path


def _y_up(points) -> np.ndarray:
  return np.asarray(points, np.float64) * np.array([1.0, -1.0])


def _assert_strokes(got: list[np.ndarray], want_y_down: list) -> None:
  assert len(got) == len(want_y_down)
  for g, w in zip(got, want_y_down):
    np.testing.assert_allclose(g, _y_up(w), atol=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# InkML.


def test_namespaced_inkml_reads_every_trace_y_flipped_and_the_document_truth(tmp_path):
  strokes, text = ink.read_inkml(_write(tmp_path, "hi.inkml", HI_INKML))
  _assert_strokes(strokes, HI_STROKES_Y_DOWN)  # the traces inside the trace group too, in document order
  assert text == "hi"  # the document's truth, not the trace group's "h"


def test_inkml_without_namespace_reads_x_and_y_from_a_trace_format_with_extra_channels(tmp_path):
  content = """<ink>
    <definitions><context xml:id="ctx"><traceFormat>
      <channel name="T" type="integer"/><channel name="X" type="decimal"/><channel name="Y" type="decimal"/>
      <channel name="F" type="decimal"/>
    </traceFormat></context></definitions>
    <trace>0 1.5 2 0.3, 10 3.5 4 0.4, 20 5.5 9 0.5</trace>
    <trace>30 8 1 0.2, 40 9 3 0.1,</trace>
  </ink>"""
  strokes, text = ink.read_inkml(_write(tmp_path, "plain.xml", content))
  _assert_strokes(strokes, [[[1.5, 2], [3.5, 4], [5.5, 9]], [[8, 1], [9, 3]]])
  assert text is None


def test_inkml_difference_prefixes_and_an_upward_y_channel(tmp_path):
  """`'` adds to the previous value, `"` to the previous value plus the previous difference, and a prefix holds
  for its channel until the next; orientation="-ve" on Y means the file already counts y up."""
  content = """<ink xmlns="http://www.w3.org/2003/InkML"><traceFormat>
      <channel name="X" type="decimal"/><channel name="Y" type="decimal" orientation="-ve"/></traceFormat>
    <trace>10 20, '1'-2, 1 -2, "1"0</trace><trace>0 0, 30 5</trace></ink>"""
  strokes, _ = ink.read_inkml(_write(tmp_path, "diff.inkml", content))
  np.testing.assert_allclose(strokes[0], [[10, 20], [11, 18], [12, 16], [14, 14]])  # y not flipped
  np.testing.assert_allclose(strokes[1], [[0, 0], [30, 5]])


# ---------------------------------------------------------------------------------------------------------------
# SVG.


def _bezier_mid(*p) -> np.ndarray:
  p = np.asarray(p, np.float64)
  return (p[0] + 2 * p[1] + p[2]) / 4 if len(p) == 3 else (p[0] + 3 * p[1] + 3 * p[2] + p[3]) / 8


def test_svg_paths_polylines_and_lines_become_strokes_y_flipped_with_curves_flattened(tmp_path):
  content = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 50">
    <defs><path d="M 0 0 L 1000 1000"/></defs>
    <g transform="translate(5 5)">
      <path d="M10 40 L10 10 H20 V40 Z"/>
      <path d="m30 40 l0 -30 h10 v30 m5 0 l5 -10 25,0"/>
    </g>
    <path d="M60 40 C60 10 80 10 80 40 Q90 10 95 40"/>
    <path d="m100 40 c0 -30 20 -30 20 0 q10 -30 15 0 S 150 20 150 40 T 170 40"/>
    <polyline points="140,40 150,10 160 40"/>
    <line x1="0" y1="45" x2="170" y2="45"/>
  </svg>"""
  strokes = ink.read_svg(_write(tmp_path, "ink.svg", content))
  assert len(strokes) == 7  # the path in <defs> is not drawn; the relative path holds two subpaths
  _assert_strokes(
    strokes[:3],
    [
      [[10, 40], [10, 10], [20, 10], [20, 40], [10, 40]],  # closed by Z
      [[30, 40], [30, 10], [40, 10], [40, 40]],  # relative l, h, v
      [[45, 40], [50, 30], [75, 30]],
    ],
  )  # m then l with an implicit second pair
  n = ink.CURVE_POINTS
  curves = strokes[3]  # a cubic then a quadratic, each flattened into n points through its end points
  assert len(curves) == 1 + 2 * n
  np.testing.assert_allclose(curves[[0, n, 2 * n]], _y_up([[60, 40], [80, 40], [95, 40]]))
  np.testing.assert_allclose(curves[[n // 2]], _y_up([_bezier_mid([60, 40], [60, 10], [80, 10], [80, 40])]))
  np.testing.assert_allclose(curves[[n + n // 2]], _y_up([_bezier_mid([80, 40], [90, 10], [95, 40])]))
  rel = strokes[4]  # c, q relative to the pen; S and T reflect the previous control point
  assert len(rel) == 1 + 4 * n
  np.testing.assert_allclose(rel[[n, 2 * n, 3 * n, 4 * n]], _y_up([[120, 40], [135, 40], [150, 40], [170, 40]]))
  np.testing.assert_allclose(rel[[n // 2]], _y_up([_bezier_mid([100, 40], [100, 10], [120, 10], [120, 40])]))
  np.testing.assert_allclose(rel[[n + n // 2]], _y_up([_bezier_mid([120, 40], [130, 10], [135, 40])]))
  s_ctrl = 2 * np.array([135, 40]) - [130, 10]  # S after q: no cubic before it, so its first control is the pen
  np.testing.assert_allclose(rel[[2 * n + n // 2]], _y_up([_bezier_mid([135, 40], [135, 40], [150, 20], [150, 40])]))
  assert not np.allclose(rel[[2 * n + n // 2]], _y_up([_bezier_mid([135, 40], s_ctrl, [150, 20], [150, 40])]))
  t_ctrl = 2 * np.array([150, 40]) - [150, 20]  # T after S: no quadratic before it either
  np.testing.assert_allclose(rel[[3 * n + n // 2]], _y_up([_bezier_mid([150, 40], [150, 40], [170, 40])]))
  assert not np.allclose(rel[[3 * n + n // 2]], _y_up([_bezier_mid([150, 40], t_ctrl, [170, 40])]))
  _assert_strokes(strokes[5:], [[[140, 40], [150, 10], [160, 40]], [[0, 45], [170, 45]]])


def test_svg_smooth_curves_reflect_the_previous_control_point(tmp_path):
  content = """<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 C0 10 10 10 10 0 S20 -10 20 0
    M0 20 Q5 30 10 20 T20 20"/></svg>"""
  cubic, quad = ink.read_svg(_write(tmp_path, "smooth.svg", content))
  n = ink.CURVE_POINTS
  np.testing.assert_allclose(cubic[[n + n // 2]], _y_up([_bezier_mid([10, 0], [10, -10], [20, -10], [20, 0])]))
  np.testing.assert_allclose(quad[[n + n // 2]], _y_up([_bezier_mid([10, 20], [15, 10], [20, 20])]))


def test_a_page_this_package_drew_reads_back_as_its_strokes(tmp_path):
  rng = np.random.default_rng(0)
  line = np.concatenate([rng.normal(size=(40, 2)) * 5, rng.random((40, 1)) < 0.2], axis=1).astype(np.float32)
  line[-1, 2] = 1
  line[5, 2] = line[4, 2] = 1  # a dot: a one-point stroke, drawn as a zero-length path
  path = str(tmp_path / "page.svg")
  draw.lines_to_svg([line], path, precision=4)
  got = ink.read_svg(path)
  want = strokes_lib.offsets_to_strokes(line)
  assert [len(s) for s in got] == [max(len(s), 2) for s in want]
  shift = got[0][0] - want[0][0]
  for g, w in zip(got, want):
    np.testing.assert_allclose(g[: len(w)], w + shift, atol=2e-4)


# ---------------------------------------------------------------------------------------------------------------
# Files that are not one line of writing.


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE ink [<!ENTITY lol "0 0, 1 1, 2 2, "><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<ink><trace>&lol2;</trace></ink>"""


@pytest.mark.parametrize(
  "reader, name, content, message",
  [
    (ink.read_inkml, "missing.inkml", None, "does not exist"),
    (ink.read_inkml, "broken.inkml", "<ink><trace>0 0, 1 1</ink>", "not well-formed XML"),
    (
      ink.read_inkml,
      "empty.inkml",
      "<ink><annotation type='truth'>hi</annotation><trace> </trace></ink>",
      "holds no ink",
    ),
    (ink.read_inkml, "dot.inkml", "<ink><trace>5 5</trace><trace>5 5, 5 5, 5 5</trace></ink>", "too little ink"),
    (ink.read_inkml, "dash.inkml", "<ink><trace>0 5, 1 5, 2 5, 3 5, 9 5, 20 5</trace></ink>", "too little ink"),
    (ink.read_inkml, "huge.inkml", "<ink><trace>0 0, 2e6 5, 3 4, 1 1, 2 2</trace></ink>", "absurd"),
    (ink.read_inkml, "word.inkml", "<ink><trace>0 0, 1 abc, 3 4</trace></ink>", "'a' where a number"),
    (ink.read_inkml, "short.inkml", "<ink><trace>0 0, 1 1, 3</trace></ink>", "point 3 has 1 values"),
    (
      ink.read_inkml,
      "nochannel.inkml",
      "<ink><traceFormat><channel name='X'/><channel name='F'/></traceFormat><trace>0 0, 1 1</trace></ink>",
      "no X and Y channels",
    ),
    (ink.read_inkml, "laughs.inkml", BILLION_LAUGHS, "DOCTYPE or ENTITY"),
    (ink.read_inkml, "drawing.inkml", "<svg xmlns='http://www.w3.org/2000/svg'/>", "root element is <svg>"),
    (ink.read_svg, "missing.svg", None, "does not exist"),
    (ink.read_svg, "bad.svg", "<svg><path d='M0 0 L10 10'></svg>", "not well-formed XML"),
    (
      ink.read_svg,
      "blank.svg",
      "<svg xmlns='http://www.w3.org/2000/svg'><rect width='5' height='5'/></svg>",
      "holds no ink",
    ),
    (ink.read_svg, "dot.svg", "<svg><path d='M3 3 L3 3'/><path d='M3 3 L3 3 Z'/></svg>", "too little ink"),
    (ink.read_svg, "inf.svg", "<svg><path d='M0 0 L1e999 5 L3 4 L1 1 L2 2'/></svg>", "non-finite"),
    (ink.read_svg, "arc.svg", "<svg><path d='M0 0 A5 5 0 0 1 10 10'/></svg>", "arc"),
    (ink.read_svg, "odd.svg", "<svg><polyline points='0,0 10,10 20'/></svg>", "odd number"),
    (ink.read_svg, "nocmd.svg", "<svg><path d='10 10 L20 20'/></svg>", "command letter"),
    (ink.read_svg, "noargs.svg", "<svg><path d='M0 0 L20'/></svg>", "without its 2 numbers"),
    (ink.read_svg, "junk.svg", "<svg><path d='M0 0 L20 20 X5'/></svg>", "'X' in its path data"),
    (ink.read_svg, "ink.svg", "<ink><trace>0 0, 1 1</trace></ink>", "root element is <ink>"),
  ],
)
def test_bad_ink_files_are_one_line_errors_naming_the_file(reader, name, content, message, tmp_path):
  path = str(tmp_path / name) if content is None else _write(tmp_path, name, content)
  with pytest.raises(ink.InkError, match=message) as e:
    reader(path)
  assert path in str(e.value) and "\n" not in str(e.value)


def test_files_too_big_or_with_too_many_points_are_refused(tmp_path, monkeypatch):
  trace = ", ".join(f"{i} {i % 7}" for i in range(50))
  path = _write(tmp_path, "many.inkml", f"<ink><trace>{trace}</trace></ink>")
  svg = _write(tmp_path, "curvy.svg", "<svg><path d='M0 0 C1 1 2 1 3 0 C4 1 5 1 6 0 C7 1 8 1 9 0'/></svg>")
  assert len(ink.read_inkml(path)[0][0]) == 50 and len(ink.read_svg(svg)[0]) == 1 + 3 * ink.CURVE_POINTS
  monkeypatch.setattr(ink, "MAX_POINTS", 40)
  with pytest.raises(ink.InkError, match=f"{path} holds more than 40 points"):
    ink.read_inkml(path)
  with pytest.raises(ink.InkError, match="more than 40 points with its curves flattened"):
    ink.read_svg(svg)
  monkeypatch.setattr(ink, "MAX_BYTES", 100)
  with pytest.raises(ink.InkError, match=f"{path} is {os.path.getsize(path):,} bytes; at most 100 are read"):
    ink.read_inkml(path)


# ---------------------------------------------------------------------------------------------------------------
# Styles: text and the writer's hand.


def test_a_style_file_needs_its_text_from_the_file_or_the_caller(tmp_path):
  svg = _write(tmp_path, "hi.svg", "<svg><path d='M0 0 L0 20 M0 8 L6 6 L10 8 L10 20'/></svg>")
  bare = _write(tmp_path, "bare.inkml", HI_INKML.replace('<annotation type="truth">  hi  </annotation>', ""))
  with pytest.raises(ink.InkError, match=f"{svg} cannot say what its line says.*--style_text"):
    writer_lib.read_style_file(svg)
  with pytest.raises(ink.InkError, match=f'{bare} holds no <annotation type="truth">.*--style_text'):
    writer_lib.read_style_file(bare)
  assert writer_lib.read_style_file(svg, " h  i ").text == "h i"
  assert writer_lib.read_style_file(bare, "hi").text == "hi"
  labelled = _write(tmp_path, "hi.inkml", HI_INKML)
  assert writer_lib.read_style_file(labelled).text == "hi"
  assert writer_lib.read_style_file(labelled, "ih").text == "ih"  # the caller's text wins
  with pytest.raises(writer_lib.WriteError, match=r"text given for the style file .* is empty"):
    writer_lib.read_style_file(labelled, "  ")
  npz = str(tmp_path / "s.npz")
  writer_lib.save_style(npz, np.array([[0, 0, 0], [1, 2, 1]], np.float32), "ab")
  assert writer_lib.read_style_file(npz).text == "ab" and writer_lib.read_style_file(npz, "cd").text == "cd"
  with pytest.raises(writer_lib.WriteError, match=r"ending in .npz, .inkml, .xml, .svg"):
    writer_lib.read_style_file(_write(tmp_path, "hi.txt", "hi"))


def test_strokes_to_training_units_scales_to_the_line_height_and_resamples_at_the_point_step():
  strokes_y_up = [_y_up([[0, 0], [0, 20]]), _y_up([[5, 5]]), _y_up([[10, 0], [10, 10], [30, 10]])]
  offsets = strokes_lib.strokes_to_training_units(strokes_y_up, line_height=40.0, point_step=2.0)
  parts = strokes_lib.offsets_to_strokes(offsets)
  assert len(parts) == 3 and len(parts[1]) == 1  # the dot stays one point
  np.testing.assert_allclose(np.ptp(np.concatenate(parts)[:, 1]), 40.0)  # 20 units tall -> 40
  for part, start in zip(parts, [[0, 0], [10, -10], [20, 0]]):  # k = 2, origin at the first point
    np.testing.assert_allclose(part[0], start, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(np.diff(parts[0], axis=0), axis=1), 2.0, rtol=1e-5)
  np.testing.assert_allclose(parts[2][[0, 10, -1]], [[20, 0], [20, -20], [60, -20]], atol=1e-5)  # through the corner
  with pytest.raises(ValueError, match="height"):
    strokes_lib.strokes_to_training_units([_y_up([[0, 0], [10, 0]])], 40.0, 2.0)


def test_ink_styles_take_the_writers_hand(tmp_path):
  """`hand_scale` reads the writer's own styles (their median height and point spacing) and `load_style_any`
  brings ink to them; serve's names are the same functions."""
  assert app_lib.HandScale is writer_lib.HandScale and app_lib.hand_scale is writer_lib.hand_scale
  workdir = tmp_path / "w"
  os.makedirs(workdir / writer_lib.STYLES_DIR)
  # A zigzag 30 units tall with its pen-down points 1.5 apart, written as two strokes.
  y = np.where((np.arange(41) // 20) % 2 == 0, np.arange(41) % 20, 20 - np.arange(41) % 20) * 1.5
  pts = np.stack([np.zeros(41), y], axis=1)
  style = strokes_lib.strokes_to_offsets([pts[:21], pts[21:] + [5.0, 0.0]])
  assert np.ptp(pts[:, 1]) == 30.0
  writer_lib.save_style(str(workdir / writer_lib.STYLES_DIR / "zig.npz"), style, "zz")
  writer = types.SimpleNamespace(workdir=str(workdir), stats=STATS)  # all hand_scale reads of a Writer
  assert writer_lib.hand_scale(writer) == writer_lib.HandScale(30.0, 1.5)
  offsets, text = writer_lib.load_style_any(writer, _write(tmp_path, "hi.inkml", HI_INKML))
  assert text == "hi" and offsets.dtype == np.float32 and offsets[-1, 2] == 1
  parts = strokes_lib.offsets_to_strokes(offsets)
  assert len(parts) == 4
  np.testing.assert_allclose(np.ptp(np.concatenate(parts)[:, 1]), 30.0, rtol=1e-5)  # 20 file units -> 30
  np.testing.assert_allclose(np.linalg.norm(np.diff(parts[0], axis=0), axis=1), 1.5, rtol=1e-5)  # the h's stem
  np.testing.assert_allclose(
    [p[0] for p in parts], 1.5 * (_y_up([s[0] for s in HI_STROKES_Y_DOWN]) - [0, 0]), atol=1e-5
  )  # stroke starts where the file put them, scaled by 30 / 20
  npz, npz_text = writer_lib.load_style_any(writer, str(workdir / writer_lib.STYLES_DIR / "zig.npz"), "other")
  np.testing.assert_array_equal(npz, style.astype(np.float32))  # a saved style is already in the writer's units
  assert npz_text == "other"
  empty = types.SimpleNamespace(workdir=str(tmp_path / "none"), stats=STATS)  # no styles: from the statistics
  assert writer_lib.hand_scale(empty) == writer_lib.HandScale(25 * 3.5, 3.5)


def test_ink_far_longer_than_a_line_is_refused(tmp_path, monkeypatch):
  writer = types.SimpleNamespace(workdir=str(tmp_path), stats=STATS)
  path = _write(tmp_path, "hi.inkml", HI_INKML)
  assert len(writer_lib.load_style_any(writer, path)[0]) > 20
  monkeypatch.setattr(writer_lib, "MAX_STYLE_STEPS", 20)
  with pytest.raises(writer_lib.WriteError, match=f"{path} makes .* points at the writer's scale; at most 20"):
    writer_lib.load_style_any(writer, path)
