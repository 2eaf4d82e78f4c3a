"""Write text in handwriting from a checkpoint (the command line over `handwriting_jax.writer`).

  python -m handwriting_jax.write --workdir=DIR --text="..." --bias=0.75 --style=N --out=page.svg
  python -m handwriting_jax.write --workdir=DIR --num_lines=4 --out=scribbles.png     # prediction checkpoint

Without --workdir the pretrained model shipped in `handwriting_jax/pretrained/` is used. `--style=N` primes with
validation line N of the data set named in the checkpoint's config, `--style_file=x.npz` with a saved style
(`--save_style=x.npz` saves the one in use); every line of a page is written in the same style. Without a style, the
first line is written freely and primes the others (the page's style is a function of the seed). Mistakes (unknown
characters, empty text, a workdir without a checkpoint...) are reported as one line and a non-zero exit status.
"""

import os
import sys

import jax
import numpy as np
from absl import app, flags, logging

from handwriting_jax import cli, draw
from handwriting_jax import sample as sample_lib
from handwriting_jax import writer as writer_lib
from handwriting_jax.errors import UserError

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so importing this module defines none)."""
  flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/ (default: a writer shipped in the "
                      "package, chosen by --shipped).")
  flags.DEFINE_string("shipped", None, f"Without --workdir: the shipped writer to use, one of "
                      f"{', '.join(writer_lib.SHIPPED)} (default {writer_lib.DEFAULT_SHIPPED}).")
  flags.DEFINE_integer("checkpoint_step", None, "Checkpoint step to use (default: the newest).")
  flags.DEFINE_string("text", None, "Text to write (synthesis checkpoints); wrapped into lines of --width characters.")
  flags.DEFINE_float("bias", None, "Sampling bias b >= 0 (eqs. 61-62; default: the checkpoint's config.sample.bias).")
  flags.DEFINE_integer("style", None, "Prime with validation line N of the checkpoint's data set.")
  flags.DEFINE_string("style_file", None, "Prime with a style saved by --save_style (.npz).")
  flags.DEFINE_string("style_name", None, "Prime with a style saved with the writer (WORKDIR/styles/NAME.npz; the "
                      "shipped writers' styles are their own most legible samples).")
  flags.DEFINE_string("save_style", None, "Save the --style line used to this .npz file.")
  flags.DEFINE_bool("same_style", True, "Without a style: write the first line freely and prime the others with it.")
  flags.DEFINE_string("out", "handwriting.svg", "Output file, .svg (one path per stroke) or .png.")
  flags.DEFINE_integer("seed", 0, "Random seed: the same seed writes the same page.")
  flags.DEFINE_integer("width", 40, "Characters per line when wrapping --text.")
  flags.DEFINE_bool("plots", False, "Also write attention and density plots beside --out.")
  flags.DEFINE_integer("num_lines", None, "Prediction checkpoints: number of unconditional lines.")
  flags.DEFINE_string("animation", None, "Also animate the pen writing the first line: a .gif or .html file.")
  flags.DEFINE_string("export", None, "Instead of writing: copy the model's parameters (no optimiser state) into "
                      "this empty folder as a params-only checkpoint (how handwriting_jax/pretrained is made).")


def run(workdir: str | None, out: str, *, text: str | None = None, bias: float | None = None,
        style: int | None = None, style_file: str | None = None, save_style_path: str | None = None,
        same_style: bool = True, seed: int = 0, width: int = 40, plots: bool = False, num_lines: int | None = None,
        checkpoint_step: int | None = None, animation: str | None = None, style_name: str | None = None,
        shipped: str | None = None) -> list[str]:
  """The command line as a function: write the page (and plots, animation); returns the paths written."""
  if os.path.splitext(out)[1].lower() not in writer_lib.OUTPUT_EXTENSIONS:
    raise writer_lib.WriteError(f"--out={out}: the output must end in one of {writer_lib.OUTPUT_EXTENSIONS}")
  if animation is not None and os.path.splitext(animation)[1].lower() not in (".gif", ".html"):
    raise writer_lib.WriteError(f"--animation={animation}: the animation must end in .gif or .html")
  if sum(x is not None for x in (style, style_file, style_name)) > 1:
    raise writer_lib.WriteError("give one of --style, --style_file and --style_name, not several")
  if save_style_path is not None and style is None:
    raise writer_lib.WriteError("--save_style saves the line chosen with --style=N; give --style")
  for path, flag in ((out, "--out"), (animation, "--animation"), (save_style_path, "--save_style")):
    if path is not None:
      writer_lib.check_output_path(path, flag)
  lines = None if text is None else writer_lib.wrap_text(text, width)
  writer = writer_lib.load_writer(writer_lib.resolve_workdir(workdir, shipped), checkpoint_step)
  bias = writer.config.sample.bias if bias is None else bias
  stem = os.path.splitext(out)[0]
  if not writer.conditional:
    if text is not None or style is not None or style_file is not None or style_name is not None:
      raise writer_lib.WriteError(f"the checkpoint in {writer.workdir} is a prediction network: it writes "
                                  "unconditionally; use --num_lines instead of --text / --style")
    samples = sample_lib.sample(writer.model, jax.random.key(seed), num_lines=num_lines or 1, bias=bias,
                                max_steps=writer.config.sample.max_steps, stats=writer.stats)
    writer_lib.save_page(samples.lines, out)
    plot_paths = writer_lib.save_plots(samples, writer.stats, stem) if plots else []
    return [out] + plot_paths + _animate(samples, animation)
  if num_lines is not None:
    raise writer_lib.WriteError("--num_lines is for prediction checkpoints; this is a synthesis network: "
                                "give --text")
  if lines is None:
    raise writer_lib.WriteError("give --text to write (this is a synthesis checkpoint)")
  sample_lib.check_texts(lines, writer.alphabet)
  prime, written = None, []
  if style is not None or style_file is not None or style_name is not None:
    if style is not None:
      strokes, prime_text = writer_lib.dataset_style(writer.config, style)
    elif style_name is not None:
      strokes, prime_text = writer_lib.writer_style(writer, style_name)
    else:
      strokes, prime_text = writer_lib.load_style(style_file)
    prime = writer_lib.make_prime(writer, strokes, prime_text)
    if save_style_path is not None:
      writer_lib.save_style(save_style_path, strokes, prime_text)
      written.append(save_style_path)
  samples = writer_lib.write_lines(writer, lines, bias=bias, seed=seed, prime=prime, same_style=same_style)
  writer_lib.save_page(samples.lines, out, lines)
  written.append(out)
  if plots:
    written += writer_lib.save_plots(samples, writer.stats, stem, lines)
  written += _animate(samples, animation, lines)
  unfinished = [lines[b] for b in np.flatnonzero(~samples.finished_B)]
  if unfinished:
    logging.warning("%d line(s) reached the length cap before the window finished the text: %s", len(unfinished),
                    unfinished)
  return written


def _animate(samples: sample_lib.Samples, path: str | None, texts: list[str] | None = None) -> list[str]:
  """The pen writing the first line, as a GIF or HTML page at `path` (nothing when None)."""
  if path is None:
    return []
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  draw.save_animation(samples.lines[0], path, text=texts[0] if texts else None)
  return [path]


USER_ERRORS = (UserError, FileNotFoundError)


def main(argv):
  """Entry point: one-line errors for user mistakes (no traceback), exit status 1."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # keep Orbax's restore chatter off the console
  try:
    if FLAGS.export:
      workdir = writer_lib.resolve_workdir(FLAGS.workdir, FLAGS.shipped)
      print(writer_lib.export_model(workdir, FLAGS.export, FLAGS.checkpoint_step))
      return
    paths = run(FLAGS.workdir, FLAGS.out, text=FLAGS.text, bias=FLAGS.bias, style=FLAGS.style,
                style_file=FLAGS.style_file, save_style_path=FLAGS.save_style, same_style=FLAGS.same_style,
                seed=FLAGS.seed, width=FLAGS.width, plots=FLAGS.plots, num_lines=FLAGS.num_lines,
                checkpoint_step=FLAGS.checkpoint_step, animation=FLAGS.animation, style_name=FLAGS.style_name,
                shipped=FLAGS.shipped)
  except USER_ERRORS as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    sys.exit(1)
  for p in paths:
    print(p)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
