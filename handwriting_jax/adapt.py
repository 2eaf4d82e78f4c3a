"""Learn a hand from a few lines: fine-tune a trained writer on 1-10 lines of one person's writing (the command line
over `handwriting_jax.writing.adaptation`).

  python -m handwriting_jax.adapt --style_file=mine_0.npz --style_file=mine_1.npz --out=my_writer
  python -m handwriting_jax.write --workdir=my_writer --style_name=hand_0 --text="in my own hand" --out=page.svg

Each --style_file is a style as `write --save_style` saves it (.npz: 'strokes', raw offsets [T, 3] at the network's
point rate, and 'text'), or ink of one line that says what it says: InkML with its transcription (an
`<annotation type="truth">`), rescaled to the writer's hand as `write` does. The writer (default: the shipped `iam`
one; or --workdir / --shipped) is fine-tuned on the lines with its own training loss and saved to --out as a
params-only checkpoint that `write` and `serve` load like any other, with the lines as its styles hand_0, hand_1, ...
Progress (step, loss, ETA) goes to stderr, one summary
line to stdout. Mistakes (no or too many lines, a missing or broken style file, characters the writer cannot write,
an --out that already holds a checkpoint, a prediction network) are one `error:` line and exit status 1, before any
training.
"""

import sys
import time

from absl import flags, logging

from handwriting_jax import cli
from handwriting_jax.writing import adaptation
from handwriting_jax.writing import writer as writer_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so importing this module defines none)."""
  flags.DEFINE_multi_string(
    "style_file",
    [],
    f"A line of the hand to learn (.npz as `write --save_style` saves it, "
    f"or InkML with its text); repeat for 1 to {adaptation.MAX_LINES} lines.",
  )
  flags.DEFINE_string("out", None, "New (or empty) folder to save the adapted writer in.")
  cli.define_writer_flags(writer_lib.SHIPPED, writer_lib.DEFAULT_SHIPPED)
  flags.DEFINE_integer("steps", adaptation.DEFAULT_STEPS, "Optimiser steps (the lines are one batch).")
  flags.DEFINE_enum(
    "adapt",
    adaptation.DEFAULT_WHAT,
    list(adaptation.WHAT),
    "What is fine-tuned: all = every "
    "parameter, pulled toward the original weights; output = only the mixture output layer; lora = "
    f"rank-{adaptation.LORA_RANK} deltas on every weight matrix.",
  )
  flags.DEFINE_float(
    "learning_rate",
    None,
    "Adam learning rate (default per --adapt: "
    + ", ".join(f"{k} {v:g}" for k, v in adaptation.LEARNING_RATES.items())
    + ").",
  )
  flags.DEFINE_float(
    "pull",
    adaptation.DEFAULT_PULL,
    "--adapt=all: weight of the L2 pull toward the original weights, next to the NLL in nats per line.",
  )
  flags.DEFINE_integer("seed", 0, "Random seed (the lora factors' initialisation).")


class _Progress:
  """Steps, loss and ETA on stderr, about ten lines a run (the first step compiles, so the ETA starts after it)."""

  def __init__(self, stream=sys.stderr):
    """Start the clock (the compile counts from here)."""
    self.stream, self.start, self.first = stream, time.perf_counter(), None

  def __call__(self, done: int, total: int, loss: float) -> None:
    """Report step `done` of `total` when it is one of the ten shown."""
    now = time.perf_counter()
    if done == 1:
      self.first = now
      print(
        f"step 1/{total}  NLL {loss:.1f} nats per line  (compiled in {now - self.start:.1f} s)",
        file=self.stream,
        flush=True,
      )
      return
    if done % max(total // 10, 1) and done != total:
      return
    eta = (now - self.first) / (done - 1) * (total - done)
    print(f"step {done}/{total}  NLL {loss:.1f} nats per line  ETA {eta:.0f} s", file=self.stream, flush=True)


def run(
  style_files: list[str],
  out: str | None,
  *,
  workdir: str | None = None,
  shipped: str | None = None,
  steps: int = adaptation.DEFAULT_STEPS,
  what: str = adaptation.DEFAULT_WHAT,
  learning_rate: float | None = None,
  pull: float = adaptation.DEFAULT_PULL,
  seed: int = 0,
) -> str:
  """The command line as a function: check everything, adapt, save; returns the summary line."""
  start = time.perf_counter()
  if not style_files:
    raise adaptation.AdaptError("give the lines of the hand to learn: --style_file=line.npz (repeat for more lines)")
  if len(style_files) > adaptation.MAX_LINES:
    raise adaptation.AdaptError(
      f"{len(style_files)} --style_file given; adaptation takes 1 to {adaptation.MAX_LINES} lines of one hand"
    )
  if not out:
    raise adaptation.AdaptError("give --out=DIR, a new or empty folder for the adapted writer")
  if steps < 1:
    raise adaptation.AdaptError(f"--steps={steps}: take at least 1 step")
  adaptation.check_out_dir(out)
  styles = [writer_lib.read_style_file(path) for path in style_files]  # every file checked before the writer loads
  writer = writer_lib.load_writer(writer_lib.resolve_workdir(workdir, shipped))
  lines = [(writer_lib.style_offsets(writer, style), style.text) for style in styles]
  adaptation.check_lines(writer, lines)
  adapted, result = adaptation.adapt(
    writer, lines, steps=steps, learning_rate=learning_rate, what=what, pull=pull, seed=seed, progress=_Progress()
  )
  adaptation.save_adapted(writer, adapted, lines, result, out, time.perf_counter() - start)
  styles = ", ".join(f"{adaptation.STYLE_PREFIX}{i}" for i in range(len(lines)))
  return (
    f"adapted {writer.workdir} ({what}, {steps} steps) to {len(lines)} line{'s' * (len(lines) > 1)}: NLL "
    f"{result.losses[0]:.1f} -> {result.losses[-1]:.1f} nats per line; {time.perf_counter() - start:.1f} s "
    f"wall, compile included; saved {out} (styles {styles})"
  )


def main(argv):
  """Entry point: one-line errors for user mistakes (no traceback), exit status 1."""
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # keep Orbax's restore chatter off the console
  with cli.one_line_errors(FileNotFoundError):
    summary = run(
      FLAGS.style_file,
      FLAGS.out,
      workdir=FLAGS.workdir,
      shipped=FLAGS.shipped,
      steps=FLAGS.steps,
      what=FLAGS.adapt,
      learning_rate=FLAGS.learning_rate,
      pull=FLAGS.pull,
      seed=FLAGS.seed,
    )
  print(summary)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
