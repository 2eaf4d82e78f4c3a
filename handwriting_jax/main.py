"""Train a Graves handwriting network: `python -m handwriting_jax.main --config=configs/synthesis.py --workdir=DIR`.

Any field can be overridden as `--config.group.field=value`; a workdir that holds checkpoints is resumed.
"""

import jax
from absl import flags, logging
from ml_collections import config_flags

from handwriting_jax import cli
from handwriting_jax.training import loop as train
from handwriting_jax.training import parallel

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Config file, e.g. configs/synthesis.py:small.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address",
  None,
  "Multi-process runs outside SLURM: host:port of process 0 (default "
  "$JAX_COORDINATOR_ADDRESS). Under `srun` everything is detected; see docs/training.md.",
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes",
  None,
  "Multi-process runs: number of processes (default $JAX_NUM_PROCESSES, or detected under SLURM).",
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id",
  None,
  "Multi-process runs: this process's id in [0, num_processes) (default $JAX_PROCESS_ID, or detected under SLURM).",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  """Initialise multi-host JAX when needed, log the devices, hand off to `train.train_and_evaluate`."""
  del argv
  config = cli.config_value(_CONFIG)
  with cli.one_line_errors():
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    if jax.process_index() == 0:
      print(
        f"JAX process {jax.process_index()}/{jax.process_count()}, local devices: {jax.local_devices()}", flush=True
      )
    train.train_and_evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
  logging.set_verbosity(logging.WARNING)  # Orbax and JAX are chatty at INFO; progress goes to stdout
  cli.run(main)  # the first Ctrl-C saves and stops (train.Preemption), a second one ends here in one line
