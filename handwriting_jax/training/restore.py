"""Restore a trained network from a workdir: a training checkpoint (its TrainState, shapes only, as the loop builds
it) or a params-only export, with its config, alphabet and normalisation statistics.

The writer library (`writing.writer.load_writer`) and a run started from another's parameters
(`config.train.init_from`) both read checkpoints through here. No real model or optimiser is built to learn the tree's
shape (`nnx.eval_shape`); the moving average of the parameters is used when the run kept one, unless `raw_weights`.
"""

import dataclasses
import os

import ml_collections
from absl import logging
from flax import nnx

from handwriting_jax.config import defaults
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.data.strokes import NormStats
from handwriting_jax.model import networks
from handwriting_jax.training import checkpoint as ckpt_lib
from handwriting_jax.training import optim
from handwriting_jax.training import step as step_lib


@dataclasses.dataclass
class Restored:
  """A restored network with what is needed to use it, and the checkpoint's metadata."""

  model: networks.Network
  config: ml_collections.ConfigDict
  alphabet: Alphabet
  stats: NormStats
  step: int
  workdir: str  # absolute
  ema: bool  # the network holds the checkpoint's moving average of the parameters (train.ema_decay)
  metadata: dict


def model_from_metadata(
  metadata: dict, abstract: bool = False
) -> tuple[networks.Network, ml_collections.ConfigDict, Alphabet, NormStats]:
  """The network of a checkpoint's config (abstract: shapes only, via `nnx.eval_shape`), its alphabet and
  normalisation statistics."""
  config = defaults.with_defaults(metadata["config"])
  alphabet = Alphabet(metadata["alphabet"])
  stats = NormStats.from_arrays(metadata["norm"])
  build = lambda: networks.create_model(config, alphabet.size)
  return (nnx.eval_shape(build) if abstract else build()), config, alphabet, stats


def restore_network(workdir: str, step: int | None = None, raw_weights: bool = False) -> Restored:
  """The newest intact (or the `step`) checkpoint of `workdir` as a network; `NoCheckpointError` when there is none.
  Newer steps that cannot be read are skipped with a warning."""
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise ckpt_lib.NoCheckpointError(f"no checkpoint in {os.path.abspath(ckpt_dir)}")
  verbosity = logging.get_verbosity()
  logging.set_verbosity(min(verbosity, logging.ERROR))  # Orbax warns that a read-only manager will not save
  try:
    ckpt = ckpt_lib.Checkpointer(workdir, read_only=True)
  finally:
    logging.set_verbosity(verbosity)

  def read(s: int):
    metadata = ckpt.restore_metadata(s)
    model, config, alphabet, stats = model_from_metadata(metadata, abstract=True)
    graphdef, abstract_params = nnx.split(model, nnx.Param)
    if metadata.get("params_only"):  # written by `export_model`: parameters, no optimiser state
      state, _ = ckpt.restore({"params": abstract_params}, s)
    else:  # a training checkpoint: the TrainState tree, shapes only, as the loop builds it
      state, _ = ckpt.restore(abstract_train_state(config, alphabet.size), s)
      state = {
        "params": state.params if raw_weights else step_lib.judged_params(state),
        "ema": state.ema is not None and not raw_weights,
      }
    return metadata, config, alphabet, stats, graphdef, state

  try:
    if step is not None and step not in ckpt.manager.all_steps():
      raise ckpt_lib.NoCheckpointError(
        f"no checkpoint of step {step} in {ckpt.path} (it has steps {sorted(ckpt.manager.all_steps())})"
      )
    loaded, restored_step, failures = ckpt.first_intact(read, None if step is None else [step])
    metadata, config, alphabet, stats, graphdef, state = loaded
    for bad, e in failures:
      logging.warning(
        "checkpoint step %d in %s cannot be read (%s); using step %d",
        bad,
        ckpt.path,
        ckpt_lib.short_reason(e),
        restored_step,
      )
  finally:
    ckpt.close()
  model = nnx.merge(graphdef, state["params"])
  ema = bool(state.get("ema")) or bool(metadata.get("exported_from", {}).get("ema"))
  return Restored(model, config, alphabet, stats, int(restored_step), os.path.abspath(workdir), ema, metadata)


def abstract_train_state(config: ml_collections.ConfigDict, alphabet_size: int) -> step_lib.TrainState:
  """The shapes of the TrainState that the loop checkpoints for `config` (nothing is allocated), log σ included
  under adaptive weight noise."""
  tx = optim.make_optimizer(config.optim, config.train.num_steps)
  noise = step_lib.noise_settings(config, 1)  # N only scales the loss: the state's shapes do not depend on it
  ema = config.train.ema_decay > 0
  return nnx.eval_shape(
    lambda: step_lib.create_train_state(networks.create_model(config, alphabet_size), tx, noise, ema)
  )[1]


def saved_steps(workdir: str, up_to: int | None = None) -> list[int]:
  """The saved checkpoint steps of `workdir` (up to `up_to`), in order."""
  ckpt = ckpt_lib.Checkpointer(workdir, read_only=True)
  try:
    return sorted(s for s in ckpt.manager.all_steps() if up_to is None or s <= up_to)
  finally:
    ckpt.close()
