"""Write text in handwriting from a checkpoint (the command line over `handwriting_jax.writing.writer`).

  python -m handwriting_jax.write --workdir=DIR --text="..." --bias=0.75 --style=N --out=page.svg
  python -m handwriting_jax.write --workdir=DIR --num_lines=4 --out=scribbles.png     # prediction checkpoint
  python -m handwriting_jax.write --text="..." --style_file=my_hand.inkml --save_style=my_hand.npz  # your own hand
  python -m handwriting_jax.write --text="..." --style_file=my_hand.svg --style_text="what it says"

Without --workdir the pretrained model shipped in `handwriting_jax/pretrained/` is used. `--style=N` primes with
validation line N of the data set named in the checkpoint's config, `--style_file=x.npz` with a saved style, or
with a line of your own hand in an InkML file (.inkml, .xml: what pen tablets and note apps export) or an SVG
drawing of pen paths, rescaled to the writer's hand; `--style_text` says what such a line says when the file does not
(`--save_style=x.npz` saves the style in use, converted). Every line of a page is written in the same style. Without
a style, the first line is written freely and primes the others (the page's style is a function of the seed). Mistakes
(unknown characters, empty text, a workdir without a checkpoint, an ink file that is not one line of writing...) are
reported as one line and a non-zero exit status.
"""

import dataclasses
import os

import jax
import numpy as np
from absl import app, flags, logging

from handwriting_jax import cli
from handwriting_jax.data import draw
from handwriting_jax.model import sampling as sample_lib
from handwriting_jax.writing import writer as writer_lib

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Request:
  """What the command line asks for: one field per flag of the same name (`define_flags`), with its default."""

  workdir: str | None = None
  out: str = "handwriting.svg"
  shipped: str | None = None
  checkpoint_step: int | None = None
  text: str | None = None
  bias: float | None = None
  style: int | None = None
  style_file: str | None = None
  style_text: str | None = None
  style_name: str | None = None
  save_style: str | None = None
  same_style: bool = True
  seed: int = 0
  width: int = 40
  plots: bool = False
  num_lines: int | None = None
  animation: str | None = None
  raw_weights: bool = False
  resample: str | None = None
  stop_rule: str | None = None

  @classmethod
  def from_flags(cls, flag_values: flags.FlagValues) -> "Request":
    """The request of the parsed command line."""
    return cls(**{f.name: flag_values[f.name].value for f in dataclasses.fields(cls)})


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so importing this module defines none)."""
  r = Request
  cli.define_writer_flags(writer_lib.SHIPPED, writer_lib.DEFAULT_SHIPPED)  # Request's defaults: None, None
  flags.DEFINE_integer("checkpoint_step", r.checkpoint_step, "Checkpoint step to use (default: the newest).")
  flags.DEFINE_string(
    "text", r.text, "Text to write (synthesis checkpoints); wrapped into lines of --width characters."
  )
  flags.DEFINE_float("bias", r.bias, "Sampling bias b >= 0 (eqs. 61-62; default: the checkpoint's config.sample.bias).")
  flags.DEFINE_integer("style", r.style, "Prime with validation line N of the checkpoint's data set.")
  flags.DEFINE_string(
    "style_file",
    r.style_file,
    "Prime with a style saved by --save_style (.npz), or with a line "
    "of your own hand: an InkML file (.inkml, .xml) or an SVG drawing of pen paths (.svg), "
    "rescaled to the writer's hand.",
  )
  flags.DEFINE_string(
    "style_text",
    r.style_text,
    "What the line in --style_file says, for an SVG or an InkML file "
    "without a truth annotation (for a .npz or an annotated InkML file it replaces their text).",
  )
  flags.DEFINE_string(
    "style_name",
    r.style_name,
    "Prime with a style saved with the writer (WORKDIR/styles/NAME.npz; "
    "the shipped writers' styles are their own most legible samples).",
  )
  flags.DEFINE_string(
    "save_style",
    r.save_style,
    "Save the style used (--style, --style_name, or --style_file "
    "converted to the writer's units) to this .npz file, to reuse with --style_file.",
  )
  flags.DEFINE_bool(
    "same_style", r.same_style, "Without a style: write the first line freely and prime the others with it."
  )
  flags.DEFINE_string("out", r.out, "Output file, .svg (one path per stroke) or .png.")
  flags.DEFINE_integer("seed", r.seed, "Random seed: the same seed writes the same page.")
  flags.DEFINE_integer("width", r.width, "Characters per line when wrapping --text.")
  flags.DEFINE_bool("plots", r.plots, "Also write attention and density plots beside --out.")
  flags.DEFINE_integer("num_lines", r.num_lines, "Prediction checkpoints: number of unconditional lines.")
  flags.DEFINE_string("animation", r.animation, "Also animate the pen writing the first line: a .gif or .html file.")
  flags.DEFINE_bool(
    "raw_weights",
    r.raw_weights,
    "Use (or --export) the trained parameters of a run that kept a "
    "moving average (config.train.ema_decay), not the average.",
  )
  flags.DEFINE_enum(
    "resample",
    r.resample,
    list(sample_lib.RESAMPLE_MODES),
    "How a network trained at a "
    "downsampled rate draws its lines (default: the checkpoint's config.sample.resample): spline = "
    "back to the raw point rate through a cubic spline, none = the written points as they are.",
  )
  cli.define_stop_rule_flag(sample_lib.STOP_RULES)  # Request's default: None
  flags.DEFINE_string(
    "export",
    None,
    "Instead of writing: copy the model's parameters (no optimiser state) into "
    "this empty folder as a params-only checkpoint (how handwriting_jax/pretrained is made).",
  )
  flags.DEFINE_integer(
    "export_average",
    1,
    "With --export: write the mean parameters of this many checkpoints, the "
    "newest (or --checkpoint_step) and those saved just before it.",
  )


def _check_request(r: Request) -> None:
  """WriteError before any work for flags that do not go together or outputs that cannot be written."""
  writer_lib.check_page_extension(r.out)
  if r.animation is not None and os.path.splitext(r.animation)[1].lower() not in (".gif", ".html"):
    raise writer_lib.WriteError(f"--animation={r.animation}: the animation must end in .gif or .html")
  if sum(x is not None for x in (r.style, r.style_file, r.style_name)) > 1:
    raise writer_lib.WriteError("give one of --style, --style_file and --style_name, not several")
  if r.style_text is not None and r.style_file is None:
    raise writer_lib.WriteError("--style_text says what the line in --style_file says; give --style_file")
  if r.save_style is not None:
    if r.style is None and r.style_file is None and r.style_name is None:
      raise writer_lib.WriteError("--save_style saves the style in use; give --style, --style_file or --style_name")
    if os.path.splitext(r.save_style)[1].lower() != ".npz":
      raise writer_lib.WriteError(f"--save_style={r.save_style}: a style is saved as .npz; end the name in .npz")
  for path, flag in ((r.out, "--out"), (r.animation, "--animation"), (r.save_style, "--save_style")):
    if path is not None:
      writer_lib.check_output_path(path, flag)


def run(r: Request) -> list[str]:
  """The command line as a function: write the page (and plots, animation); returns the paths written."""
  _check_request(r)
  lines = None if r.text is None else writer_lib.wrap_text(r.text, r.width)
  style_file = None if r.style_file is None else writer_lib.read_style_file(r.style_file, r.style_text)
  writer = writer_lib.load_writer(writer_lib.resolve_workdir(r.workdir, r.shipped), r.checkpoint_step, r.raw_weights)
  writer_lib.check_line_lengths(writer, lines or [], "--width")
  bias = writer.config.sample.bias if r.bias is None else r.bias
  if r.resample is not None:
    writer.config.sample.resample = sample_lib.check_choice(
      r.resample, sample_lib.RESAMPLE_MODES, "--resample", writer_lib.WriteError
    )
  if r.stop_rule is not None:
    writer.config.sample.stop_rule = sample_lib.check_choice(
      r.stop_rule, sample_lib.STOP_RULES, "--stop_rule", writer_lib.WriteError
    )
  stem = os.path.splitext(r.out)[0]
  styled = r.style is not None or r.style_file is not None or r.style_name is not None
  if not writer.conditional:
    if r.text is not None or styled:
      raise writer_lib.WriteError(
        f"the checkpoint in {writer.workdir} is a prediction network: it writes "
        "unconditionally; use --num_lines instead of --text / --style"
      )
    samples = sample_lib.sample(
      writer.model,
      jax.random.key(r.seed),
      num_lines=r.num_lines or 1,
      bias=bias,
      max_steps=writer.config.sample.max_steps,
      stats=writer.stats,
    )
    shown = sample_lib.display_lines(samples.lines, writer.config)
    writer_lib.save_page(shown, r.out)
    plot_paths = writer_lib.save_plots(samples, writer.stats, stem) if r.plots else []
    return [r.out] + plot_paths + _animate(shown, r.animation)
  if r.num_lines is not None:
    raise writer_lib.WriteError("--num_lines is for prediction checkpoints; this is a synthesis network: give --text")
  if lines is None:
    raise writer_lib.WriteError("give --text to write (this is a synthesis checkpoint)")
  sample_lib.check_texts(lines, writer.alphabet)
  prime, written = None, []
  if styled:
    if r.style is not None:
      strokes, prime_text = writer_lib.dataset_style(writer.config, r.style)
    elif r.style_name is not None:
      strokes, prime_text = writer_lib.writer_style(writer, r.style_name)
    else:
      strokes, prime_text = writer_lib.style_offsets(writer, style_file), style_file.text
    prime = writer_lib.make_prime(writer, strokes, prime_text)
    if r.save_style is not None:
      writer_lib.save_style(r.save_style, strokes, prime_text)
      written.append(r.save_style)
  samples = writer_lib.write_lines(writer, lines, bias=bias, seed=r.seed, prime=prime, same_style=r.same_style)
  shown = sample_lib.display_lines(samples.lines, writer.config)
  writer_lib.save_page(shown, r.out, lines)
  written.append(r.out)
  if r.plots:
    written += writer_lib.save_plots(samples, writer.stats, stem, lines)
  written += _animate(shown, r.animation, lines)
  unfinished = [lines[b] for b in np.flatnonzero(~samples.finished_B)]
  if unfinished:
    logging.warning(
      "%d line(s) reached the length cap before the window finished the text: %s", len(unfinished), unfinished
    )
  return written


def _animate(lines: list[np.ndarray], path: str | None, texts: list[str] | None = None) -> list[str]:
  """The pen writing the first of the drawn `lines`, as a GIF or HTML page at `path` (nothing when None)."""
  if path is None:
    return []
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  draw.save_animation(lines[0], path, text=texts[0] if texts else None)
  return [path]


def main(argv):
  """Entry point: one-line errors for user mistakes (no traceback), exit status 1."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # keep Orbax's restore chatter off the console
  with cli.one_line_errors(FileNotFoundError):
    if FLAGS.export:
      workdir = writer_lib.resolve_workdir(FLAGS.workdir, FLAGS.shipped)
      print(
        writer_lib.export_model(workdir, FLAGS.export, FLAGS.checkpoint_step, FLAGS.export_average, FLAGS.raw_weights)
      )
      return
    paths = run(Request.from_flags(FLAGS))
  for p in paths:
    print(p)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
