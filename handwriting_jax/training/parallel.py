"""Data parallelism over all devices of all processes, and multi-host start-up.

Two interchangeable paths, chosen by `config.parallel` and tested equal (tests/test_parallel.py):

* `"jit"` (default): `jax.jit` with `NamedSharding`: the global batch is split over the `data` axis of a 1-D mesh
  of every device, parameters and optimiser state are replicated, XLA inserts the gradient all-reduce.
* `"pmap"`: `jax.pmap` over the local devices with explicit collectives (`lax.psum` of the gradients, `lax.pmean` of
  the metrics); inside this path only, the state carries a leading device axis.

Either way `config.data.batch_size` is the global batch; each process passes its own slice (`local_batch`, as
`data.batches.BatchIterator(process_index=..., process_count=...)` yields it). The state a `DataParallel` returns
is in its own device form: hand it back to `train_step` / `eval_sums`, and call `global_state` for a checkpoint
or for sampling, which gives the same replicated global arrays on both paths, so a checkpoint written by one path
(or device count) restores under the other.

`initialize_distributed` starts multi-host JAX when a cluster is detected (docs/training.md, "Multi-GPU and
multi-node training").
"""

import functools
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from handwriting_jax.config.defaults import PARALLEL_MODES as MODES
from handwriting_jax.errors import UserError
from handwriting_jax.training import step as step_lib

AXIS = "data"


class DataParallel:
  """Places state and batches on the devices and runs the compiled train / eval steps (`config.parallel`)."""

  def __init__(
    self,
    cfg: ml_collections.ConfigDict,
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    noise: step_lib.Noise = step_lib.NO_NOISE,
  ):
    """Compile the steps of `cfg.parallel` for a validated config (validation: the mode, the batch over devices)."""
    if cfg.parallel not in MODES:
      raise ValueError(f"unknown parallel mode {cfg.parallel!r}; expected one of {MODES}")
    self.mode = cfg.parallel
    self.global_batch = int(cfg.data.batch_size)
    num_devices = jax.device_count()
    if self.global_batch % num_devices:
      raise ValueError(f"a global batch of {self.global_batch} lines does not divide over {num_devices} devices")
    self.per_device_batch = self.global_batch // num_devices
    ema_decay = float(cfg.train.ema_decay)  # the state keeps a moving average when > 0 (create_train_state)
    self.local_batch = self.global_batch // jax.process_count()
    # Auto axes: XLA's partitioner propagates the batch sharding through the scans (no sharding-in-types).
    self.mesh = jax.make_mesh((num_devices,), (AXIS,), axis_types=(AxisType.Auto,))
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P(AXIS))
    if self.mode == "jit":
      self._train_step = jax.jit(
        functools.partial(step_lib.train_step, graphdef, tx, noise=noise, ema_decay=ema_decay),
        in_shardings=(self.replicated, self.batch_sharding),
        out_shardings=(self.replicated, self.replicated),
        donate_argnums=0,
      )
      self._eval_sums = jax.jit(
        functools.partial(step_lib.eval_sums, graphdef),
        in_shardings=(self.replicated, self.batch_sharding),
        out_shardings=self.replicated,
      )
    else:
      self._local_mesh = Mesh(np.asarray(jax.local_devices()), (AXIS,))
      self._stacked = NamedSharding(self._local_mesh, P(AXIS))
      self._train_step = jax.pmap(
        functools.partial(_pmap_train_step, graphdef, tx, noise, num_devices, ema_decay),
        axis_name=AXIS,
        donate_argnums=0,
      )
      self._eval_sums = jax.pmap(functools.partial(_pmap_eval_sums, graphdef), axis_name=AXIS)

  def describe(self) -> str:
    """One line for the log: path, devices and the per-device / global batch sizes."""
    return (
      f"data parallel ({self.mode}): {jax.device_count()} device(s) x {self.per_device_batch} lines = "
      f"global batch {self.global_batch} ({self.local_batch} per process)"
    )

  def put_state(self, state: step_lib.TrainState) -> step_lib.TrainState:
    """This path's device form of a state that every process holds in full (fresh or restored)."""
    if self.mode == "jit":
      return jax.tree.map(self._replicate, state)
    return jax.tree.map(self._stack, state)

  def global_state(self, state: step_lib.TrainState) -> step_lib.TrainState:
    """The state as replicated global arrays (checkpoints, sampling): identical form on both paths."""
    return state if self.mode == "jit" else jax.tree.map(self._unstack, state)

  def put_batch(self, local_batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """Device form of this process's slice of the global batch (multi-host safe)."""
    for k, v in local_batch.items():
      if v.shape[0] != self.local_batch:
        raise ValueError(
          f"batch[{k!r}] has {v.shape[0]} lines, expected this process's slice of "
          f"config.data.batch_size={self.global_batch}: {self.local_batch}"
        )
    if self.mode == "jit":
      return {k: jax.make_array_from_process_local_data(self.batch_sharding, v) for k, v in local_batch.items()}
    n = jax.local_device_count()
    return {
      k: jax.device_put(np.reshape(v, (n, v.shape[0] // n) + v.shape[1:]), self._stacked)
      for k, v in local_batch.items()
    }

  def train_step(
    self, state: step_lib.TrainState, local_batch: Mapping[str, np.ndarray]
  ) -> tuple[step_lib.TrainState, dict]:
    """Dispatch one step (asynchronous): the new state (device form) and scalar metrics (global arrays)."""
    state, metrics = self._train_step(state, self.put_batch(local_batch))
    return state, (metrics if self.mode == "jit" else jax.tree.map(self._unstack, metrics))

  def eval_sums(self, state: step_lib.TrainState, local_batch: Mapping[str, np.ndarray]) -> dict:
    """Summed validation NLL, lines and steps of one global batch (scalar global arrays)."""
    sums = self._eval_sums(step_lib.judged_params(state), self.put_batch(local_batch))
    return sums if self.mode == "jit" else jax.tree.map(self._unstack, sums)

  def _replicate(self, x) -> jax.Array:
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, self.replicated, lambda index: host[index])

  def _stack(self, x) -> jax.Array:
    host = np.asarray(x)
    return jax.device_put(np.broadcast_to(host, (jax.local_device_count(),) + host.shape), self._stacked)

  def _unstack(self, x_NxS: jax.Array) -> jax.Array:
    """[local devices, ...] pmap output -> replicated global array, each device keeping its own copy."""
    by_device = {shard.device: shard.data for shard in x_NxS.addressable_shards}
    shape = x_NxS.shape[1:]
    arrays = [by_device[d].reshape(shape) for d in self.mesh.local_devices]
    return jax.make_array_from_single_device_arrays(shape, self.replicated, arrays)


def _pmap_train_step(
  graphdef: nnx.GraphDef,
  tx: optax.GradientTransformation,
  noise: step_lib.Noise,
  num_devices: int,
  ema_decay: float,
  state: step_lib.TrainState,
  batch: dict,
) -> tuple[step_lib.TrainState, dict]:
  """Per-device step. Each device differentiates 1/D of the global objective (its mean NLL, and L_C / N under
  adaptive weight noise, over the number of devices), so the summed gradient and every derivative clipped inside
  backprop (Graves clipping) are exactly those of the global mean that the jit path differentiates. Every device
  draws the same noisy weights (the key is the step's)."""
  objective = lambda t: step_lib.objective(graphdef, noise, t, batch, state.step, 1.0 / num_devices)
  (_, (local_loss, _, complexity)), grads = jax.value_and_grad(objective, has_aux=True)(step_lib.trained(state))
  grads = lax.psum(grads, AXIS)
  lines = batch["inputs"].shape[0]
  loss = lax.pmean(local_loss, AXIS)
  per_step = lax.psum(local_loss * lines, AXIS) / jnp.maximum(lax.psum(jnp.sum(batch["mask"]), AXIS), 1.0)
  return step_lib.apply_gradients(
    tx, state, grads, loss, per_step, complexity if noise.mode == "adaptive" else None, ema_decay
  )


def _pmap_eval_sums(graphdef: nnx.GraphDef, params: nnx.State, batch: dict) -> dict:
  """Per-device sums of `step.eval_sums`, added over all devices."""
  return lax.psum(step_lib.eval_sums(graphdef, params, batch), AXIS)


# ---------------------------------------------------------------------------------------------------------------
# Multi-host start-up.

_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")


class ClusterConfigError(UserError, RuntimeError):
  """The environment asks for a multi-process run but does not say enough to start one."""


def _int_env(env: Mapping[str, str], name: str) -> int | None:
  value = env.get(name)
  if value in (None, ""):
    return None
  try:
    return int(value)
  except ValueError as e:
    raise ClusterConfigError(f"environment variable {name}={value!r} is not an integer") from e


def _slurm_args(env: Mapping[str, str]) -> dict:
  """JAX's SLURM detection, with the one GPU that `--gpus-per-task=1` binds to a task as its device 0."""
  args = {"cluster_detection_method": "slurm"}
  visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
  if len(visible) == 1 and "JAX_LOCAL_DEVICE_IDS" not in env:
    # Otherwise JAX would pick local device SLURM_LOCALID, which does not exist for local tasks 1, 2, ...
    args["local_device_ids"] = [0]
  return args


def distributed_args(
  env: Mapping[str, str] = os.environ,
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> dict | None:
  """Keyword arguments for `jax.distributed.initialize`, or None for a single-process run.

  Explicit values (flags, else JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID) win; otherwise a SLURM
  step with more than one task (`srun`) is detected as JAX's SLURM cluster does: one process per GPU, process i of a
  node driving its i-th visible GPU, coordinator on the first node of the step (port from JAX_COORDINATOR_PORT, else
  derived from the job id).
  """
  address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
  count = num_processes if num_processes is not None else _int_env(env, "JAX_NUM_PROCESSES")
  index = process_id if process_id is not None else _int_env(env, "JAX_PROCESS_ID")
  slurm_tasks = _int_env(env, "SLURM_NTASKS") or 1
  in_slurm_step = slurm_tasks > 1 and all(v in env for v in _SLURM_VARS)
  if address is None and count is None and index is None:
    if slurm_tasks <= 1:
      return None
    if not in_slurm_step:
      missing = [v for v in _SLURM_VARS if v not in env]
      raise ClusterConfigError(
        f"SLURM_NTASKS={slurm_tasks} but {', '.join(missing)} not set: start each task with `srun` (see "
        "launch/README.md), or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID"
      )
    return _slurm_args(env)
  if count is not None and count < 1:
    raise ClusterConfigError(
      f"the number of processes (JAX_NUM_PROCESSES or --num_processes) must be >= 1, got {count}"
    )
  if count is not None and index is not None and not 0 <= index < count:
    raise ClusterConfigError(f"the process id (JAX_PROCESS_ID or --process_id) must be in [0, {count}), got {index}")
  if count == 1:
    return None
  if in_slurm_step:
    # An explicit coordinator (or count / id) under srun: SLURM fills in what was not given.
    return {"coordinator_address": address, "num_processes": count, "process_id": index, **_slurm_args(env)}
  missing = [
    name
    for name, v in (
      ("the coordinator address (JAX_COORDINATOR_ADDRESS or --coordinator_address)", address),
      ("the number of processes (JAX_NUM_PROCESSES or --num_processes)", count),
      ("this process's id (JAX_PROCESS_ID or --process_id)", index),
    )
    if v is None
  ]
  if missing:
    raise ClusterConfigError(
      "a multi-process run outside SLURM needs the coordinator address, the number of "
      f"processes and this process's id; missing {', '.join(missing)}"
    )
  return {"coordinator_address": address, "num_processes": count, "process_id": index}


def initialize_distributed(
  coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
  """`jax.distributed.initialize` when a cluster is detected (see `distributed_args`); True if it was called."""
  args = distributed_args(os.environ, coordinator_address, num_processes, process_id)
  if args is None:
    return False
  logging.info("starting multi-process JAX: %s", args)
  jax.distributed.initialize(**args)
  return True
