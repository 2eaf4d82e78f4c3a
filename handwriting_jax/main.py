"""Train a Graves handwriting network: `python -m handwriting_jax.main --config=configs/synthesis.py --workdir=DIR`.

Any field can be overridden as `--config.group.field=value`; a workdir that holds checkpoints is resumed.
"""

import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from handwriting_jax import train
from handwriting_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/synthesis.py:small.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
flags.mark_flags_as_required(["config", "workdir"])


def _cluster_detected() -> bool:
  """True when launched as several processes (SLURM with more than one task, or explicit coordinator)."""
  return int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "JAX_COORDINATOR_ADDRESS" in os.environ


def main(argv):
  """Initialise multi-host JAX when needed, log the devices, hand off to `train.train_and_evaluate`."""
  del argv
  if _cluster_detected():
    jax.distributed.initialize()
  if jax.process_index() == 0:
    print(f"JAX process {jax.process_index()}/{jax.process_count()}, local devices: {jax.local_devices()}",
          flush=True)
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
  logging.set_verbosity(logging.WARNING)  # Orbax and JAX are chatty at INFO; progress goes to stdout
  app.run(main)
