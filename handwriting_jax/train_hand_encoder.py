"""Train the hand encoder of the style-fidelity measure (`evaluation.encoder_training`) on IAM-OnDB.

python -m handwriting_jax.train_hand_encoder --iam_path=/data/iam-ondb [--out=encoder.npz]
"""

from absl import flags

from handwriting_jax import cli
from handwriting_jax.evaluation import encoder_training
from handwriting_jax.evaluation import fidelity as fid

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program)."""
  flags.DEFINE_string("iam_path", None, "IAM-OnDB folder (lineStrokes-all.tar.gz, ascii-all.tar.gz, split lists).")
  flags.DEFINE_string("out", fid.ENCODER_FILE, "Where to write the encoder (.npz).")
  flags.DEFINE_integer("steps", 3000, "Training steps.")
  flags.DEFINE_integer("batch", 128, "Crops per step.")
  flags.DEFINE_integer("crop", 192, "Feature rows per crop (about 0.1 line heights of ink each).")
  flags.DEFINE_float("learning_rate", 2e-3, "Peak learning rate (AdamW, warm-up then cosine decay).")
  flags.DEFINE_float("margin", 0.2, "CosFace margin.")
  flags.DEFINE_float("scale", 20.0, "CosFace logit scale.")
  flags.DEFINE_integer("seed", 0, "Random seed (initialisation, crops).")


def main(argv: list[str]) -> None:
  """Train and save the encoder; one `error:` line for a missing or bad data path."""
  del argv
  if not FLAGS.iam_path:
    cli.fail("--iam_path is required (the IAM-OnDB folder)")
  with cli.one_line_errors():
    info = encoder_training.train(
      FLAGS.iam_path,
      FLAGS.out,
      steps=FLAGS.steps,
      batch=FLAGS.batch,
      crop=FLAGS.crop,
      learning_rate=FLAGS.learning_rate,
      margin=FLAGS.margin,
      scale=FLAGS.scale,
      seed=FLAGS.seed,
    )
  print(f"wrote {FLAGS.out}: {info}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
