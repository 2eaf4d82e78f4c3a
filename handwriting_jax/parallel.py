"""Data parallelism: the pure train step jitted over a 1-D `data` mesh (default) with replicated parameters."""

import functools

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from handwriting_jax import step as step_lib


class DataParallel:
  """Places state and batches on the devices and runs the compiled train / eval steps.

  `config.parallel == "jit"`: `jax.jit` with `NamedSharding`: the global batch is split over the `data` axis of a
  1-D mesh of all devices, parameters and optimiser state are replicated; XLA inserts the gradient all-reduce.
  """

  def __init__(self, cfg: ml_collections.ConfigDict, graphdef: nnx.GraphDef, tx: optax.GradientTransformation):
    if cfg.parallel != "jit":
      raise ValueError(f"config.parallel={cfg.parallel!r} is not supported by this build; use 'jit'")
    self.mesh = jax.make_mesh((jax.device_count(),), ("data",))
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P("data"))
    self._train_step = jax.jit(functools.partial(step_lib.train_step, graphdef, tx),
                               in_shardings=(self.replicated, self.batch_sharding),
                               out_shardings=(self.replicated, self.replicated), donate_argnums=0)
    self._eval_sums = jax.jit(functools.partial(step_lib.eval_sums, graphdef),
                              in_shardings=(self.replicated, self.batch_sharding), out_shardings=self.replicated)

  def put_state(self, state: step_lib.TrainState) -> step_lib.TrainState:
    """Replicate a host state over all devices."""
    return jax.device_put(state, self.replicated)

  def put_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Assemble the global batch from this process's slice (multi-host safe)."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, v) for k, v in local_batch.items()}

  def train_step(self, state: step_lib.TrainState, local_batch: dict[str, np.ndarray]):
    """Dispatch one step (asynchronous): returns the new state and device metrics."""
    return self._train_step(state, self.put_batch(local_batch))

  def eval_sums(self, state: step_lib.TrainState, local_batch: dict[str, np.ndarray]) -> dict:
    """Summed validation NLL, lines and steps of one batch."""
    return self._eval_sums(state.params, self.put_batch(local_batch))
