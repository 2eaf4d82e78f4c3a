"""Judge a writer as users do: validation NLL, legibility read back by OCR, style fidelity (`evaluation.report`).

python -m handwriting_jax.evaluate [--shipped=embedded]          # a writer shipped in the package
python -m handwriting_jax.evaluate --workdir=DIR [--checkpoint_steps=4000,5000,6000] [--style_file=s.npz]
"""

import os

from absl import app, flags, logging

from handwriting_jax import cli
from handwriting_jax.evaluation import fidelity as fid
from handwriting_jax.evaluation import report
from handwriting_jax.model import sampling as sample_lib
from handwriting_jax.writing import writer as writer_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program)."""
  cli.define_writer_flags(writer_lib.SHIPPED, writer_lib.DEFAULT_SHIPPED)
  flags.DEFINE_list("checkpoint_steps", [], "Checkpoint steps to evaluate (default: the newest).")
  flags.DEFINE_list("biases", ["0", "0.5", "0.75", "1.0"], "Sampling biases to measure legibility at.")
  flags.DEFINE_integer("seeds", 3, "Draws of every sentence per bias.")
  flags.DEFINE_string(
    "style_file",
    None,
    "Also measure legibility primed with this style: .npz (write --save_style), "
    "InkML or SVG ink (whose text it must carry).",
  )
  flags.DEFINE_integer("style", None, "Also measure legibility primed with validation line N.")
  flags.DEFINE_string(
    "sentences_file", None, "Everyday sentences to write instead of the built-in 16 (a text file, one per line)."
  )
  flags.DEFINE_string(
    "digit_sentences_file",
    None,
    "Sentences rich in digits, capitals and punctuation instead of the built-in 16 (one per line).",
  )
  flags.DEFINE_string("iam_path", None, "IAM-OnDB folder, when it is not where the checkpoint's config says.")
  flags.DEFINE_bool("nll", True, "Compute the validation NLL (needs the training data).")
  flags.DEFINE_string(
    "out", None, "Output folder (default: WORKDIR/eval/step_N; for a shipped writer ./evaluation_NAME/eval/step_N)."
  )
  flags.DEFINE_integer(
    "save_styles",
    0,
    "Save the N most legible unprimed lines at --styles_bias as the writer's "
    "own styles (WORKDIR/styles/style_K.npz), for write --style_name and shipped writers.",
  )
  flags.DEFINE_float("styles_bias", 0.75, "The bias whose lines --save_styles chooses from.")
  cli.define_stop_rule_flag(sample_lib.STOP_RULES)
  flags.DEFINE_enum(
    "resample",
    None,
    list(sample_lib.RESAMPLE_MODES),
    "How lines written at a downsampled rate are "
    "drawn for reading (default: the checkpoint's config.sample.resample): spline = back to the raw "
    "rate through a cubic spline, none = the written points joined by straight lines.",
  )
  flags.DEFINE_integer(
    "fidelity_forms",
    report.Fidelity.forms,
    "Style fidelity: prime with one line of each of N held-out "
    "forms (validation hands) and find each written line's hand among the N (0: off).",
  )
  flags.DEFINE_integer(
    "fidelity_sentences", report.Fidelity.sentences, "Style fidelity: unseen sentences written per hand."
  )
  flags.DEFINE_float("fidelity_bias", report.Fidelity.bias, "Style fidelity: the sampling bias of the primed lines.")
  flags.DEFINE_integer(
    "fidelity_adapt_lines",
    report.Fidelity.adapt_lines,
    "Style fidelity: also adapt the writer to each "
    "hand on this many of its lines (python -m handwriting_jax.adapt's defaults) and measure it "
    "(0: off).",
  )
  flags.DEFINE_string(
    "hand_encoder",
    fid.ENCODER_FILE,
    "Style fidelity: the hand encoder (.npz from python -m handwriting_jax.train_hand_encoder).",
  )
  flags.DEFINE_bool(
    "raw_weights",
    False,
    "Judge the trained parameters of a run that kept a moving average (config.train.ema_decay), not the average.",
  )


def main(argv):
  """Entry point: one report per checkpoint step; one-line errors for user mistakes."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  try:
    biases = [float(b) for b in FLAGS.biases]
  except ValueError:
    cli.fail(f"--biases must be numbers, got {FLAGS.biases}")
  try:
    steps = [int(s) for s in FLAGS.checkpoint_steps] or [None]
  except ValueError:
    cli.fail(f"--checkpoint_steps must be integers, got {FLAGS.checkpoint_steps}")
  with cli.one_line_errors(FileNotFoundError):
    workdir = writer_lib.resolve_workdir(FLAGS.workdir, FLAGS.shipped)
    style = writer_lib.read_style_file(FLAGS.style_file) if FLAGS.style_file else None
    sentences = report.read_sentences(FLAGS.sentences_file) if FLAGS.sentences_file else report.SENTENCES
    digit_sentences = (
      report.read_sentences(FLAGS.digit_sentences_file) if FLAGS.digit_sentences_file else report.DIGIT_SENTENCES
    )
    for step in steps:
      out = FLAGS.out if FLAGS.out is None or len(steps) == 1 else os.path.join(FLAGS.out, f"step_{step}")
      result = report.evaluate(
        workdir,
        step,
        biases=biases,
        seeds=FLAGS.seeds,
        out_dir=out,
        prime_style=style,
        style_index=FLAGS.style,
        iam_path=FLAGS.iam_path,
        nll=FLAGS.nll,
        styles=FLAGS.save_styles,
        styles_bias=FLAGS.styles_bias,
        stop_rule=FLAGS.stop_rule,
        resample=FLAGS.resample,
        raw_weights=FLAGS.raw_weights,
        sentences=sentences,
        digit_sentences=digit_sentences,
        fidelity=report.Fidelity(
          FLAGS.fidelity_forms,
          FLAGS.fidelity_sentences,
          FLAGS.fidelity_bias,
          FLAGS.hand_encoder,
          FLAGS.fidelity_adapt_lines,
        ),
      )
      print(report.summary(result), flush=True)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
