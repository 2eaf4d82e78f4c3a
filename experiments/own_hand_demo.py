"""The "write in your own hand" picture: a hand given as pen ink, then text written unprimed, primed and adapted.

  python experiments/own_hand_demo.py --out=docs/assets/own_hand.png [--workdir=DIR] [--seed=0]

The hand is ink this project draws itself (a synthetic Hershey-script writer with its own slant, proportions and
spacing; no IAM-OnDB data), given to the writer as a user's InkML or canvas line is: pen strokes in their own units,
rescaled to the writer's hand (`writer.style_offsets`). Rows: the hand's lines; two unseen sentences written unprimed;
primed with the hand's first line; after `adaptation.adapt` on its three lines and primed the same way. Beside each
written line, its cosine similarity to the hand (the shipped hand encoder, mean over the hand's lines).
"""

import argparse
import time

import numpy as np

from handwriting_jax.data import draw, hershey
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.evaluation import fidelity
from handwriting_jax.writing import adaptation
from handwriting_jax.writing import writer as writer_lib

HAND_TEXTS = ("the morning post came late", "a letter from an old friend", "written in a hurried hand")
SENTENCES = ("please call me back after lunch", "the garden looks lovely in spring")


def hand_lines(writer: writer_lib.Writer, seed: int, font: str) -> list[tuple[np.ndarray, str]]:
  """Three lines of one synthetic writer, as pen strokes rescaled to `writer`'s hand: (raw offsets, text)."""
  rng = np.random.default_rng(seed)
  person = hershey.make_writer(rng, hershey.font_list(font), 30.0)
  out = []
  for text in HAND_TEXTS:
    ink = hershey.write_line(text, person, rng, 9.0)
    strokes = strokes_lib.points_to_strokes(strokes_lib.offsets_to_points(ink))
    style = writer_lib.StyleInk("synthetic", text, strokes=[s[:, :2] for s in strokes])
    out.append((writer_lib.style_offsets(writer, style), text))
  return out


def main() -> None:
  """Write the picture and print the similarities and the adaptation time."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="docs/assets/own_hand.png")
  parser.add_argument("--workdir", default=None)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--font", default="scripts", help="Hershey font of the synthetic hand: scripts or cursive")
  parser.add_argument("--bias", type=float, default=0.75)
  args = parser.parse_args()
  writer = writer_lib.load_writer(args.workdir)
  lines = hand_lines(writer, args.seed, args.font)
  encoder, _ = fidelity.load_encoder()
  hand_NxD = fidelity.embed_lines(encoder, [x for x, _ in lines])
  prime = writer_lib.make_prime(writer, *lines[0])
  started = time.perf_counter()
  adapted, _ = adaptation.adapt(writer, lines)
  seconds = time.perf_counter() - started
  adapted_prime = writer_lib.make_prime(adapted, *lines[0])
  rows, captions = [x for x, _ in lines], [f"the hand: {t}" for _, t in lines]
  for label, w, p in (
    ("unprimed", writer, None),
    ("primed", writer, prime),
    ("adapted + primed", adapted, adapted_prime),
  ):
    written = writer_lib.write_lines(w, list(SENTENCES), bias=args.bias, seed=args.seed, prime=p, same_style=False)
    sims = fidelity.embed_lines(encoder, written.lines) @ hand_NxD.T
    for line, text, sim in zip(written.lines, SENTENCES, sims.mean(axis=1)):
      rows.append(line)
      captions.append(f"{label} (similarity to the hand {sim:.2f}): {text}")
      print(f"{label:18s} {sim:.3f}  {text}")
  draw.save_lines_png(rows, captions, args.out)
  print(f"adapted on {len(lines)} lines in {seconds:.1f} s; wrote {args.out}")


if __name__ == "__main__":
  main()
