"""A local web page and JSON API to write with (`serving.app`): `python -m handwriting_jax.serve [--workdir=DIR]
[--port=8000]`; without --workdir the default shipped writer is used."""

from absl import flags, logging

from handwriting_jax import cli
from handwriting_jax.serving import app as app_lib
from handwriting_jax.writing import adaptation
from handwriting_jax.writing import writer as writer_lib


def define_flags() -> None:
  """The command-line flags (defined only when run as a program)."""
  cli.define_writer_flags(writer_lib.SHIPPED, writer_lib.DEFAULT_SHIPPED)
  flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (127.0.0.1: this machine only).")
  flags.DEFINE_integer("port", 8000, "Port to listen on.", lower_bound=1, upper_bound=65535)
  flags.DEFINE_float("batch_wait", 0.02, "Seconds to gather concurrent requests into one sampler call.")
  flags.DEFINE_integer(
    "adapt_steps",
    adaptation.DEFAULT_STEPS,
    'Optimiser steps of "learn my hand" (the page\'s fine-tuning on the lines drawn on its canvas).',
  )


def main(argv) -> None:
  """Load the writer, warm the sampler up, serve until Ctrl-C."""
  del argv
  logging.set_verbosity(logging.WARNING)
  try:
    import uvicorn
  except ImportError:
    cli.fail("the server needs the serve extra: pip install -e '.[serve]'")
  with cli.one_line_errors(FileNotFoundError):
    writer = writer_lib.load_writer(writer_lib.resolve_workdir(flags.FLAGS.workdir, flags.FLAGS.shipped))
    if not writer.conditional:
      cli.fail(f"{writer.workdir} holds a prediction network; the page needs a synthesis network")
    service = app_lib.Service(writer, wait_s=flags.FLAGS.batch_wait, adapt_steps=flags.FLAGS.adapt_steps)
  print(f"writer {writer.workdir} step {writer.step}; open http://{flags.FLAGS.host}:{flags.FLAGS.port}/", flush=True)
  uvicorn.run(app_lib.make_app(service), host=flags.FLAGS.host, port=flags.FLAGS.port, log_level="warning")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
