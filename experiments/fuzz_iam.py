"""Fuzz the IAM-OnDB line and transcription parsers: any bytes give a parsed result or an IAMFormatError.

  python experiments/fuzz_iam.py --minutes=5       # report how many inputs were tried

Inputs are drawn by hypothesis: arbitrary bytes, and the fixture files of tests/fixtures/iam with bytes replaced,
inserted, deleted or spliced (so most inputs are nearly valid XML and reach deep into the parsers). Any other
exception is a bug; hypothesis shrinks it to a small example and the run stops with it.
"""

import argparse
import glob
import os
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handwriting_jax.data import iam

_FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "iam")


def seed_files(kind: str) -> list[bytes]:
  """The fixture's line files ("xml") or transcriptions ("txt"): real IAM layouts to mutate."""
  folder = iam.STROKES_DIR if kind == "xml" else iam.ASCII_DIR
  paths = sorted(glob.glob(os.path.join(_FIXTURE, folder, "**", f"*.{kind}"), recursive=True))
  out = []
  for path in paths:
    with open(path, "rb") as f:
      out.append(f.read())
  return out


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
  """A seed file with a few random edits (replace, insert, delete, splice another seed's piece)."""
  data = bytearray(draw(st.sampled_from(seeds)))
  for _ in range(draw(st.integers(0, 6))):
    op = draw(st.sampled_from(["replace", "insert", "delete", "splice"]))
    at = draw(st.integers(0, len(data)))
    if op == "replace" and data:
      data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
    elif op == "insert":
      data[at:at] = draw(
        st.binary(max_size=12)
        | st.sampled_from(
          [
            b"<",
            b">",
            b'"',
            b"-",
            b"&amp;",
            b"<Stroke>",
            b"</Stroke>",
            b'<Point x="1" y="2"/>',
            b"CSR:\n",
            b"<!DOCTYPE a [<!ENTITY e 'x'>]>",
            b"\x00",
            "\u00e9".encode("utf-8"),
            b"\xff",
          ]
        )
      )
    elif op == "delete":
      del data[at : at + draw(st.integers(1, 40))]
    else:
      other = draw(st.sampled_from(seeds))
      lo = draw(st.integers(0, len(other)))
      data[at:at] = other[lo : lo + draw(st.integers(1, 80))]
  return bytes(data)


def check_line(data: bytes) -> None:
  """A line file parses to finite [T, 3] offsets with eos on the last row, or raises IAMFormatError."""
  for strict in (False, True):
    try:
      line = iam.parse_line_strokes(data, strict=strict)
    except iam.IAMFormatError:
      continue
    assert line.ndim == 2 and line.shape[1] == 3 and len(line) >= 1, line.shape
    assert np.all(np.isfinite(line)) and line[-1, 2] == 1.0


def check_transcription(data: bytes) -> None:
  """A transcription parses to a list of stripped, non-empty lines, or raises IAMFormatError."""
  try:
    lines = iam.parse_transcription(data)
  except iam.IAMFormatError:
    return
  assert all(isinstance(x, str) and x and x == x.strip() for x in lines)


def repeat_for(target, seconds: float) -> None:
  """Run the hypothesis test `target` once, then again until `seconds` have passed."""
  stop_at = time.time() + seconds
  target()
  while time.time() < stop_at:
    target()


def fuzz_target(name: str, seconds: float, chunk: int = 500) -> int:
  """Fuzz target `name` ("line" or "transcription") in runs of `chunk` fresh random inputs until `seconds` have
  passed (at least one run); the count of inputs tried. A failing input raises, shrunk by hypothesis."""
  seeds = seed_files("xml" if name == "line" else "txt")
  check = {"line": check_line, "transcription": check_transcription}[name]
  tried = [0]

  @settings(max_examples=chunk, deadline=None, database=None, suppress_health_check=list(HealthCheck))
  @given(st.binary(max_size=400) | mutated(seeds))
  def target(data):
    tried[0] += 1
    check(data)

  repeat_for(target, seconds)
  return tried[0]


def main(argv=None) -> None:
  """Fuzz both targets for `--minutes` together and print the counts."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--minutes", type=float, default=2.0, help="wall time, both targets together")
  args = p.parse_args(argv)
  start = time.time()
  counts = {name: fuzz_target(name, args.minutes * 30) for name in ("line", "transcription")}
  print(
    f"fuzzed {sum(counts.values()):,} inputs in {time.time() - start:.0f} s ({counts['line']:,} line files, "
    f"{counts['transcription']:,} transcriptions): every one parsed or raised IAMFormatError"
  )


if __name__ == "__main__":
  main()
