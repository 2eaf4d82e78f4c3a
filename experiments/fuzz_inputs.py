"""Fuzz what users hand the writer: style files (.npz, InkML, SVG) and the web API's JSON bodies.

  python experiments/fuzz_inputs.py --minutes=5       # report how many inputs were tried

Every input must give a result or a one-line user error (`UserError`: a WriteError, InkError, RequestError...), never
another exception. Style files are drawn by hypothesis as arbitrary bytes and as real style files (the shipped
writer's own .npz style, an InkML line, an SVG line) with bytes replaced, inserted, deleted or spliced; each is read
as `write --style_file` reads it. API bodies are JSON values of any shape around the fields `/api/write` and
`/api/adapt` read (text, bias, seed, style, prime, hand, lines), with huge, non-finite, negative, nested and wrongly
typed values; each is checked as the server checks it before any sampling (`Service.parse`, `Service.parse_adapt`).
Any other exception is a bug; hypothesis shrinks it to a small example and the run stops with it.
"""

import argparse
import contextlib
import os
import sys
import tempfile
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handwriting_jax.errors import UserError
from handwriting_jax.serving import app as app_lib
from handwriting_jax.writing import writer as writer_lib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fuzz_iam import mutated, repeat_for  # the byte mutations and the run loop of the IAM parser fuzzing

_INKML = b"""<?xml version="1.0" encoding="UTF-8"?>
<ink xmlns="http://www.w3.org/2003/InkML"><annotation type="truth">hi</annotation>
<trace>0 0, 0 20</trace><trace>0 12, 5 7, 10 12, 10 20</trace><trace>15 10, 15 20</trace></ink>
"""
_SVG = b"""<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 V20 M0 12 C3 6 7 6 10 12 V20 M15 10 v10"/>
<polyline points="15,5 15,6"/></svg>
"""


def style_seeds() -> dict[str, bytes]:
  """Real style files by extension: the shipped writer's first style, an InkML and an SVG line."""
  workdir = writer_lib.pretrained_workdir()
  with open(os.path.join(workdir, writer_lib.STYLES_DIR, "style_0.npz"), "rb") as f:
    npz = f.read()
  return {".npz": npz, ".inkml": _INKML, ".svg": _SVG}


def check_style_file(folder: str, ext: str, data: bytes, text: str | None) -> None:
  """`data` saved as a style file reads as write --style_file reads it, or raises a UserError."""
  path = os.path.join(folder, f"style{ext}")
  with open(path, "wb") as f:
    f.write(data)
  try:
    style = writer_lib.read_style_file(path, text)
  except UserError:
    return
  assert style.text and (style.offsets_Tx3 is not None or style.strokes)


_NUMBERS = (
  st.integers()
  | st.integers(min_value=10**30, max_value=10**400)
  | st.floats(allow_nan=True, allow_infinity=True)
  | st.sampled_from([0, -1, 0.75, 1e308, -0.0])
)
_SCALARS = st.none() | st.booleans() | _NUMBERS | st.text(max_size=30) | st.sampled_from(["ab", "hi there", "style_0"])
_JSON = st.recursive(
  _SCALARS,
  lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
  max_leaves=30,
)
_POINTS = st.lists(st.lists(st.lists(_NUMBERS, min_size=0, max_size=3), max_size=6), max_size=4)
_PRIME = st.fixed_dictionaries({}, optional={"strokes": _POINTS | _JSON, "text": st.text(max_size=20) | _JSON})
_KEYS = {
  "text": st.text(max_size=60) | _JSON,
  "bias": _NUMBERS | _JSON,
  "seed": _NUMBERS | _JSON,
  "style": st.text(max_size=10) | _JSON,
  "prime": _PRIME | _JSON,
  "hand": st.text(max_size=10) | _JSON,
  "lines": st.lists(_PRIME, max_size=7) | _JSON,
}
_BODIES = st.fixed_dictionaries({}, optional=_KEYS) | _JSON


def check_body(service: app_lib.Service, body) -> None:
  """A JSON body is checked as the server checks it before sampling: a parsed request or a UserError."""
  for parse in (service.parse, service.parse_adapt):
    with contextlib.suppress(UserError):
      parse(body)


def fuzz_target(name: str, seconds: float, chunk: int = 300) -> int:
  """Fuzz target `name` ("style" or "api") in runs of `chunk` fresh random inputs until `seconds` have passed (at
  least one run); the count of inputs tried. A failing input raises, shrunk by hypothesis."""
  tried = [0]
  if name == "style":
    seeds = style_seeds()
    folder = tempfile.mkdtemp(prefix="fuzz_style_")

    @settings(max_examples=chunk, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(seeds)), st.data(), st.none() | st.text(max_size=12))
    def target(ext, data, text):
      tried[0] += 1
      payload = data.draw(st.binary(max_size=400) | mutated([seeds[ext]]))
      check_style_file(folder, ext, payload, text)

  else:
    service = app_lib.Service(writer_lib.load_writer(writer_lib.pretrained_workdir("embedded")))

    @settings(max_examples=chunk, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(_BODIES)
    def target(body):
      tried[0] += 1
      check_body(service, body)

  repeat_for(target, seconds)
  return tried[0]


def main(argv=None) -> None:
  """Fuzz both targets for `--minutes` together and print the counts."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--minutes", type=float, default=2.0, help="wall time, both targets together")
  args = p.parse_args(argv)
  start = time.time()
  counts = {name: fuzz_target(name, args.minutes * 30) for name in ("style", "api")}
  print(
    f"fuzzed {sum(counts.values()):,} inputs in {time.time() - start:.0f} s ({counts['style']:,} style files, "
    f"{counts['api']:,} API bodies): every one gave a result or a one-line user error"
  )


if __name__ == "__main__":
  main()
