"""Bring your own ink: pen strokes from InkML files (W3C, what pen tablets and note apps export) and SVG drawings.

`read_inkml(path)` -> (strokes, text or None) and `read_svg(path)` -> strokes, each stroke a float64 `[n, 2]` array
of pen positions in the file's own units with y UP (both formats count y down, as screens do; it is flipped here).
The units are arbitrary: `strokes.strokes_to_training_units` rescales the ink to a writer's hand (see
`writer.load_style_any`, which `write --style_file` uses).

InkML. Every `<trace>` (inside `<traceGroup>`s too, and in `<definitions>`: references through `<traceView>` are
not followed) is a stroke of comma-separated points. The first `<traceFormat>` in the file names the channels: X and
Y are read, the others (T, F, ...) skipped; without one, the first two values of each point are X and Y. Values may
carry the `!` `'` `"` prefixes (explicit value, first and second difference; a prefix holds for its channel until
the next one), and a channel with `orientation="-ve"` counts the other way. The transcription is the document's
`<annotation type="truth">` (a child of `<ink>`; the truths of trace groups label parts, not the line).

SVG. Every `<path>` (each subpath, begun by `M`/`m`, is a pen-down stroke), `<polyline>`, `<polygon>` and `<line>`
outside `<defs>` and the other containers that are never drawn. Path data may use M L H V C S Q T Z, absolute or
relative; curves are flattened into `CURVE_POINTS` points each, through their end points; arcs (A) are refused.
`transform` attributes are IGNORED: a drawing whose elements are moved, scaled or rotated each by a transform of
its own reads distorted (one uniform scale or translation of the whole drawing does not matter: the ink is rescaled
anyway).

Both readers refuse a file over `MAX_BYTES` before parsing it and any DOCTYPE or ENTITY declaration (entity
expansion tricks), and check the ink: at most `MAX_POINTS` points, finite coordinates within `MAX_COORD`, and more
than a dot. Every mistake is an `InkError` with a one-line message naming the file.
"""

import os
import re
import xml.etree.ElementTree as ET
from xml.parsers import expat

import numpy as np

from handwriting_jax.errors import UserError

MAX_BYTES = 20 * 2**20  # a line of writing takes a few hundred kilobytes at most
MAX_POINTS = 200_000  # points in a file, curves flattened
MAX_COORD = 1e6  # |x|, |y| in the file's units
MIN_POINTS = 5  # fewer is a dot or a dash, not a line of writing
CURVE_POINTS = 16  # points per flattened Bezier curve (the ink is resampled at the writer's spacing afterwards)
INKML_EXTENSIONS = (".inkml", ".xml")
SVG_EXTENSIONS = (".svg",)
# Containers whose SVG content is not drawn where it stands.
_SVG_HIDDEN = frozenset(
  {"defs", "clipPath", "mask", "symbol", "marker", "pattern", "metadata", "title", "desc", "style", "script"}
)
_SVG_SHAPES = frozenset({"path", "polyline", "polygon", "line"})
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_INK_TOKEN = re.compile(rf"""[!'"]|#[0-9A-Fa-f]+|{_NUMBER}|[TF*?]|\S""")
_PATH_TOKEN = re.compile(rf"([MmLlHhVvCcSsQqTtAaZz])|({_NUMBER})|[\s,]+|(.)", re.DOTALL)
_PATH_ARGS = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2}


class InkError(UserError, ValueError):
  """An ink file (InkML, SVG) that is not one readable line of writing; the one-line message names the file."""


class _DeclarationError(Exception):
  """Raised from the expat pre-scan at a DOCTYPE or ENTITY declaration."""


def _refuse_declaration(*_) -> None:
  """Expat handler: stop the pre-scan at a declaration."""
  raise _DeclarationError


def _local(tag) -> str:
  """An element's tag without its namespace (`{http://www.w3.org/2003/InkML}trace` -> `trace`)."""
  return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _parse_xml(path: str, kind: str) -> ET.Element:
  """The root element of the XML file `path`; InkError when it is missing, too big, not XML or declares a DOCTYPE or
  ENTITY (refused before any tree is built, so no entity is ever expanded)."""
  if not os.path.isfile(path):
    raise InkError(f"{kind} file {path} does not exist")
  size = os.path.getsize(path)
  if size > MAX_BYTES:
    raise InkError(
      f"{kind} file {path} is {size:,} bytes; at most {MAX_BYTES:,} are read (a line of writing takes far less)"
    )
  with open(path, "rb") as f:
    data = f.read()
  scan = expat.ParserCreate()
  scan.StartDoctypeDeclHandler = _refuse_declaration
  scan.EntityDeclHandler = _refuse_declaration
  try:
    scan.Parse(data, True)
  except _DeclarationError:
    raise InkError(
      f"{kind} file {path} declares a DOCTYPE or ENTITY, which is refused; remove the declaration"
    ) from None
  except expat.ExpatError as e:
    raise InkError(f"{kind} file {path} is not well-formed XML: {e}") from None
  except (LookupError, ValueError) as e:  # a declared encoding Python does not know (found by fuzz_inputs.py)
    raise InkError(f"{kind} file {path} is unreadable XML: {e}") from None
  try:
    return ET.fromstring(data)
  except (ET.ParseError, LookupError, ValueError) as e:
    raise InkError(f"{kind} file {path} is unreadable XML: {e}") from None


def _check_strokes(strokes: list[np.ndarray], path: str, kind: str, nothing: str) -> list[np.ndarray]:
  """The non-empty strokes, or InkError for no ink, too many points, non-finite or absurd coordinates, or a dot."""
  strokes = [s for s in strokes if len(s)]
  if not strokes:
    raise InkError(f"{kind} file {path} holds no ink: {nothing}")
  allpts_Nx2 = np.concatenate(strokes)
  if len(allpts_Nx2) > MAX_POINTS:
    raise InkError(f"{kind} file {path} holds {len(allpts_Nx2)} points; at most {MAX_POINTS} (one line of writing)")
  if not np.all(np.isfinite(allpts_Nx2)) or np.abs(allpts_Nx2).max() > MAX_COORD:
    raise InkError(f"{kind} file {path} holds non-finite or absurd coordinates (beyond ±{MAX_COORD:g})")
  width, height = np.ptp(allpts_Nx2, axis=0)
  if len(allpts_Nx2) < MIN_POINTS or not min(width, height) > 1e-9 * max(1.0, np.abs(allpts_Nx2).max()):
    raise InkError(
      f"{kind} file {path} holds too little ink for a line of writing: {len(allpts_Nx2)} points "
      f"spanning {width:.3g} x {height:.3g} (a dot or a straight dash?)"
    )
  return strokes


# ---------------------------------------------------------------------------------------------------------------
# InkML.


def read_inkml(path: str) -> tuple[list[np.ndarray], str | None]:
  """(pen strokes `[n, 2]` with y up in the file's units, the truth annotation or None) of an InkML file, so a
  tablet's ink can prime a writer; InkError naming the file for anything that is not one line of ink."""
  root = _parse_xml(path, "InkML")
  if _local(root.tag) != "ink":
    raise InkError(f"InkML file {path} is not InkML: its root element is <{_local(root.tag)}>, not <ink>")
  ix, iy, sign_2 = _trace_format(root, path)
  strokes, total = [], 0
  for k, trace in enumerate(e for e in root.iter() if _local(e.tag) == "trace"):
    text = trace.text or ""
    total += text.count(",") + 1
    if total > MAX_POINTS:
      raise InkError(f"InkML file {path} holds more than {MAX_POINTS} points (one line of writing has far fewer)")
    strokes.append(_read_trace(text, ix, iy, f"InkML file {path}: trace {k + 1}") * sign_2)
  truth = next(
    (" ".join((e.text or "").split()) for e in root if _local(e.tag) == "annotation" and e.get("type") == "truth"), ""
  )
  return _check_strokes(strokes, path, "InkML", "no <trace> with points"), truth or None


def _trace_format(root: ET.Element, path: str) -> tuple[int, int, np.ndarray]:
  """(index of X, index of Y among a point's values, signs that turn (X, Y) into (x right, y up)) from the first
  `<traceFormat>` (none: X and Y are the first two values, y down)."""
  fmt = next((e for e in root.iter() if _local(e.tag) == "traceFormat"), None)
  if fmt is None:
    return 0, 1, np.array([1.0, -1.0])
  channels = [e for e in fmt.iter() if _local(e.tag) == "channel"]
  names = [c.get("name", "") for c in channels]
  if "X" not in names or "Y" not in names:
    raise InkError(f"InkML file {path}: its traceFormat has no X and Y channels (it has {', '.join(names) or 'none'})")
  ix, iy = names.index("X"), names.index("Y")
  flip = [channels[i].get("orientation", "+ve").strip() == "-ve" for i in (ix, iy)]
  return ix, iy, np.array([-1.0 if flip[0] else 1.0, 1.0 if flip[1] else -1.0])


def _read_trace(text: str, ix: int, iy: int, where: str) -> np.ndarray:
  """The (X, Y) points `[n, 2]` of one trace's text, as the file counts them (difference prefixes applied)."""
  state = {c: ["!", 0.0, 0.0] for c in (ix, iy)}  # per channel: prefix in force, previous value, previous difference
  points = []
  for j, point in enumerate(text.split(",")):
    tokens = _INK_TOKEN.findall(point)
    if not tokens:
      continue
    values, prefix = [], None
    for tok in tokens:
      if tok in ("!", "'", '"'):
        prefix = tok
      else:
        values.append((prefix, tok))
        prefix = None
    if len(values) <= max(ix, iy):
      raise InkError(f"{where} point {j + 1} has {len(values)} values; X and Y are values {ix + 1} and {iy + 1}")
    xy = []
    for c in (ix, iy):
      prefix, tok = values[c]
      st = state[c]
      if prefix is not None:
        st[0] = prefix
      if tok == "*":  # the same as the previous point
        value = st[1]
      else:
        try:
          x = float(int(tok[1:], 16)) if tok.startswith("#") else float(tok)
        except (ValueError, OverflowError):
          raise InkError(f"{where} point {j + 1} holds {tok!r} where a number is expected") from None
        value = x if st[0] == "!" else st[1] + x if st[0] == "'" else st[1] + st[2] + x
      st[1], st[2] = value, value - st[1]
      xy.append(value)
    points.append(xy)
  return np.asarray(points, np.float64).reshape(-1, 2)


# ---------------------------------------------------------------------------------------------------------------
# SVG.


def read_svg(path: str) -> list[np.ndarray]:
  """Pen strokes `[n, 2]` with y up in the drawing's units of an SVG drawing (paths, polylines, polygons, lines;
  transforms ignored), so ink drawn or exported as vectors can prime a writer; InkError naming the file."""
  root = _parse_xml(path, "SVG")
  if _local(root.tag) != "svg":
    raise InkError(f"SVG file {path} is not SVG: its root element is <{_local(root.tag)}>, not <svg>")
  strokes, total = [], 0
  for k, el in enumerate(_svg_shapes(root)):
    where = f"SVG file {path}: <{_local(el.tag)}> {k + 1}"
    tag = _local(el.tag)
    if tag == "path":
      found = _path_strokes(el.get("d", ""), where, MAX_POINTS - total)
    elif tag == "line":
      found = [
        np.array(
          [[_length(el, "x1", where), _length(el, "y1", where)], [_length(el, "x2", where), _length(el, "y2", where)]]
        )
      ]
    else:
      nums = _numbers(el.get("points", ""), where)
      if len(nums) % 2:
        raise InkError(f"{where} has an odd number of coordinates in its points")
      pts = np.asarray(nums, np.float64).reshape(-1, 2)
      found = [np.concatenate([pts, pts[:1]]) if tag == "polygon" and len(pts) else pts]
    total += sum(len(s) for s in found)
    if total > MAX_POINTS:
      raise InkError(f"SVG file {path} holds more than {MAX_POINTS} points (one line of writing has far fewer)")
    strokes += [s * np.array([1.0, -1.0]) for s in found]
  return _check_strokes(strokes, path, "SVG", "no <path>, <polyline>, <polygon> or <line> with points")


def _svg_shapes(root: ET.Element):
  """The drawable shapes under `root`, in document order, skipping containers that are not drawn (no recursion:
  deep nesting is fine)."""
  stack = [root]
  while stack:
    el = stack.pop()
    tag = _local(el.tag)
    if tag in _SVG_HIDDEN:
      continue
    if tag in _SVG_SHAPES:
      yield el
    stack.extend(reversed(list(el)))


def _length(el: ET.Element, name: str, where: str) -> float:
  """A plain-number attribute of `el` (a "px" suffix allowed; absent: 0)."""
  value = el.get(name, "0").strip().removesuffix("px")
  try:
    return float(value)
  except ValueError:
    raise InkError(f"{where} has {name}={value!r}, not a number") from None


def _numbers(text: str, where: str) -> list[float]:
  """The numbers of a `points` list (separated by spaces and/or commas)."""
  out = []
  for m in _PATH_TOKEN.finditer(text):
    if m.group(1) or m.group(3):
      raise InkError(f"{where} has {(m.group(1) or m.group(3))!r} in its points, where numbers are expected")
    if m.group(2):
      out.append(float(m.group(2)))
  return out


def _bezier(p_Kx2: np.ndarray) -> np.ndarray:
  """`CURVE_POINTS` points of the Bezier curve with control points `p_Kx2` (K = 3: quadratic, 4: cubic), t in
  (0, 1]: the start point is already in the stroke, the end point is the last."""
  t = (np.arange(1, CURVE_POINTS + 1) / CURVE_POINTS)[:, None]
  if len(p_Kx2) == 3:
    return (1 - t) ** 2 * p_Kx2[0] + 2 * (1 - t) * t * p_Kx2[1] + t**2 * p_Kx2[2]
  return (1 - t) ** 3 * p_Kx2[0] + 3 * (1 - t) ** 2 * t * p_Kx2[1] + 3 * (1 - t) * t**2 * p_Kx2[2] + t**3 * p_Kx2[3]


def _path_strokes(d: str, where: str, budget: int) -> list[np.ndarray]:
  """The strokes (one per subpath) of SVG path data `d`, y down as written; at most `budget` points."""
  tokens = []
  for m in _PATH_TOKEN.finditer(d):
    if m.group(3):
      raise InkError(f"{where} has {m.group(3)!r} in its path data")
    if m.group(1) or m.group(2):
      tokens.append(m.group(1) or float(m.group(2)))
  strokes, pts, count = [], None, 0
  cur, start = np.zeros(2), np.zeros(2)
  cmd, ctrl = None, None  # the command in force; the last curve's control point, for S and T: ("C"|"Q", point)
  i = 0
  while i < len(tokens):
    if isinstance(tokens[i], str):
      cmd = tokens[i]
      i += 1
      if cmd in "Zz":
        if pts is not None:
          if not np.array_equal(cur, start):
            pts.append(start[None])
          strokes.append(np.concatenate(pts))
        pts, cur, ctrl = None, start, None
        continue
      if cmd in "Aa":
        raise InkError(
          f"{where} draws an arc (A), which is not read; convert arcs to curves (in Inkscape: Path > "
          "Object to Path, then Extensions > Modify Path > Add Nodes)"
        )
    elif cmd is None or cmd in "Zz":
      raise InkError(
        f"{where}: its path data has a number where a command letter is expected (after {cmd or 'the start'})"
      )
    c, n = cmd.upper(), _PATH_ARGS[cmd.upper()]
    args = tokens[i : i + n]
    if len(args) < n or any(isinstance(a, str) for a in args):
      raise InkError(f"{where}: its path data has a {cmd!r} without its {n} numbers")
    i += n
    base = cur if cmd.islower() else np.zeros(2)
    if c == "M":
      if pts is not None:
        strokes.append(np.concatenate(pts))
      cur = start = base + args
      pts, ctrl = [cur[None]], None
      cmd = "l" if cmd == "m" else "L"  # further pairs are lines
      count += 1
      continue
    if pts is None:  # drawing on after Z: a new stroke from the closed subpath's start
      pts = [cur[None]]
      count += 1
    if c in "LHV":
      end = (
        base + args
        if c == "L"
        else np.array([base[0] + args[0], cur[1]])
        if c == "H"
        else np.array([cur[0], base[1] + args[0]])
      )
      seg, ctrl = end[None], None
    elif c in "CS":
      p2, end = base + args[-4:-2], base + args[-2:]
      p1 = base + args[:2] if c == "C" else 2 * cur - ctrl[1] if ctrl and ctrl[0] == "C" else cur
      seg, ctrl = _bezier(np.stack([cur, p1, p2, end])), ("C", p2)
    else:  # Q, T
      end = base + args[-2:]
      p1 = base + args[:2] if c == "Q" else 2 * cur - ctrl[1] if ctrl and ctrl[0] == "Q" else cur
      seg, ctrl = _bezier(np.stack([cur, p1, end])), ("Q", p1)
    pts.append(seg)
    cur = end
    count += len(seg)
    if count > budget:
      raise InkError(
        f"{where} holds more than {MAX_POINTS} points with its curves flattened (one line of writing has far fewer)"
      )
  if pts is not None:
    strokes.append(np.concatenate(pts))
  return strokes
