"""Subprocess half of tests/test_parallel.py: runs with N fake CPU devices (XLA_FLAGS set by the caller).

`python tests/parallel_worker.py steps OUT`: two train steps of the tiny synthesis network on the same global batch,
single-device (plain jit), sharded (`parallel="jit"`) and pmapped; writes OUT/<path>.npz (parameters, metrics, eval
sums) and OUT/ckpt_<path> checkpoints written from `DataParallel.global_state`.
`python tests/parallel_worker.py restore OUT`: restores every checkpoint OUT/ckpt_<path> on this process's devices,
writes OUT/restored_<path>.npz and continues the pmap-written one for a step under the jit path.
`python tests/parallel_worker.py multihost OUT`: one process of a multi-process run, started like the launch scripts
start it (`parallel.initialize_distributed` reading SLURM or JAX_* variables set by the caller): the same two steps
on both paths, each process feeding its own slice of every global batch; process 0 writes OUT/multihost_<path>.npz,
all processes together write the checkpoint OUT/ckpt_multihost.
"""

import functools
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import PartitionSpec as P

from handwriting_jax.config import defaults
from handwriting_jax.model import networks
from handwriting_jax.training import checkpoint as ckpt_lib
from handwriting_jax.training import optim, parallel
from handwriting_jax.training import step as step_lib

ALPHABET = 12
PATHS = ("single", "jit", "pmap")


def tiny_config(mode: str = "jit") -> ml_collections.ConfigDict:
  """The tiny synthesis network, one layer (fast compiles), with Graves clipping that really clips: a step that
  mixed up per-device and global loss scales would clip different derivatives and disagree."""
  cfg = defaults.apply_variant(defaults.base_config("synthesis"), "tiny")
  cfg.model.num_layers = 1
  cfg.model.lstm_clip = 0.02
  cfg.model.output_clip = 0.2
  cfg.parallel = mode
  return cfg


def synthetic_batch(seed: int, batch: int, t: int = 24, u: int = 6) -> dict[str, np.ndarray]:
  """A global batch with ragged masks (lines of different lengths), random strokes and texts."""
  rng = np.random.default_rng(seed)
  strokes = rng.normal(size=(batch, t + 1, 3)).astype(np.float32)
  strokes[..., 2] = (rng.random((batch, t + 1)) < 0.1).astype(np.float32)
  strokes[:, 0] = (0.0, 0.0, 1.0)
  lengths = rng.integers(t // 3, t + 1, size=batch)
  mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float32)
  text_lengths = rng.integers(1, u + 1, size=batch)
  char_mask = (np.arange(u)[None, :] < text_lengths[:, None]).astype(np.float32)
  chars = (rng.integers(2, ALPHABET, size=(batch, u)) * char_mask).astype(np.int32)
  return {
    "inputs": strokes[:, :-1],
    "targets": strokes[:, 1:] * mask[..., None],
    "mask": mask,
    "chars": chars,
    "char_mask": char_mask,
  }


def fresh_state(cfg):
  """(graphdef, tx, host state) of the tiny network."""
  model = networks.create_model(cfg, ALPHABET)
  tx = optim.make_optimizer(cfg.optim, cfg.train.num_steps)
  graphdef, state = step_lib.create_train_state(model, tx)
  return graphdef, tx, state


def flat(tree, prefix: str) -> dict[str, np.ndarray]:
  """Numpy copies of the leaves of a (global, replicated) tree, keyed by their paths."""
  return {
    prefix + jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }


def run_steps(out: str) -> None:
  """Two steps per path on the same two global batches; dump results and checkpoints."""
  cfg = tiny_config()
  batches = [synthetic_batch(s, cfg.data.batch_size) for s in (1, 2)]
  graphdef, tx, initial = fresh_state(cfg)
  shapes = [x.shape for x in jax.tree.leaves(initial)]
  uneven = tiny_config()
  uneven.data.batch_size = 2 * jax.device_count() + 1
  try:
    parallel.DataParallel(uneven, graphdef, tx)
    raise AssertionError(
      f"a global batch of {uneven.data.batch_size} lines was accepted on {jax.device_count()} devices"
    )
  except ValueError as e:
    assert "does not divide over" in str(e), e
  for path in PATHS:
    result, state = {}, initial
    if path == "single":
      step_fn = jax.jit(functools.partial(step_lib.train_step, graphdef, tx))
      for i, b in enumerate(batches):
        state, metrics = step_fn(state, b)
        result.update(flat(metrics, f"metrics{i}/"))
      result.update(flat(state, "state/"))
    else:
      par = parallel.DataParallel(tiny_config(path), graphdef, tx)
      placed = par.put_batch(batches[0])
      if path == "jit":  # really sharded: each device holds B / N lines
        assert placed["inputs"].sharding.spec == P(parallel.AXIS), placed["inputs"].sharding
        assert placed["inputs"].addressable_shards[0].data.shape[0] == par.per_device_batch
      state = par.put_state(state)
      for i, b in enumerate(batches):
        state, metrics = par.train_step(state, b)
        result.update(flat(metrics, f"metrics{i}/"))
      result.update(flat(par.eval_sums(state, batches[0]), "sums/"))
      host = par.global_state(state)
      assert [x.shape for x in jax.tree.leaves(host)] == shapes
      assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(host))
      result.update(flat(host, "state/"))
      ckpt = ckpt_lib.Checkpointer(os.path.join(out, f"ckpt_{path}"))
      ckpt.save(2, host, {"path": path, "devices": jax.device_count()})
      ckpt.close()
    np.savez(os.path.join(out, f"{path}.npz"), devices=jax.device_count(), **result)


def run_restore(out: str) -> None:
  """Restore every checkpoint OUT/ckpt_* into the fresh host state's structure; continue the pmap one under jit."""
  cfg = tiny_config()
  graphdef, tx, initial = fresh_state(cfg)
  restored = {}
  for name in sorted(os.listdir(out)):
    if name.startswith("ckpt_"):
      path, ckpt = name[len("ckpt_") :], ckpt_lib.Checkpointer(os.path.join(out, name), read_only=True)
      if ckpt.latest_step() is None:  # a run that failed before its save finished: its test reports that
        continue
      state, metadata = ckpt.restore(initial)
      assert metadata["path"] == path, metadata
      restored[path] = state
      np.savez(os.path.join(out, f"restored_{path}.npz"), devices=jax.device_count(), **flat(state, "state/"))
  par = parallel.DataParallel(cfg, graphdef, tx)
  state, metrics = par.train_step(par.put_state(restored["pmap"]), synthetic_batch(3, cfg.data.batch_size))
  assert int(par.global_state(state).step) == 3 and bool(metrics["finite"]), metrics
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(par.global_state(state).params))


def run_multihost(out: str) -> None:
  """One process of a multi-process run: two steps per path on this process's slices of the global batches."""
  assert parallel.initialize_distributed(), "no cluster detected: the caller sets SLURM_* or JAX_* variables"
  pid = jax.process_index()
  assert jax.process_count() > 1 and jax.device_count() == jax.process_count() * jax.local_device_count()
  cfg = tiny_config()
  batches = [synthetic_batch(s, cfg.data.batch_size) for s in (1, 2)]
  graphdef, tx, initial = fresh_state(cfg)
  for path in ("jit", "pmap"):
    par = parallel.DataParallel(tiny_config(path), graphdef, tx)
    lo, hi = pid * par.local_batch, (pid + 1) * par.local_batch  # BatchIterator(process_index=pid) slicing
    result, state = {}, par.put_state(initial)
    for i, b in enumerate(batches):
      state, metrics = par.train_step(state, {k: v[lo:hi] for k, v in b.items()})
      result.update(flat(metrics, f"metrics{i}/"))
    if path == "jit":  # (pmap's eval sums equal jit's on 4 devices; its multi-process unstacking is the metrics')
      result.update(flat(par.eval_sums(state, {k: v[lo:hi] for k, v in batches[0].items()}), "sums/"))
    host = par.global_state(state)
    result.update(flat(host, "state/"))
    if pid == 0:
      np.savez(os.path.join(out, f"multihost_{path}.npz"), devices=jax.device_count(), **result)
    if path == "jit":  # every process takes part in a save, as train.py's checkpoints do
      ckpt = ckpt_lib.Checkpointer(os.path.join(out, "ckpt_multihost"))
      ckpt.save(2, host, {"path": "multihost", "devices": jax.device_count()})
      ckpt.close()
  jax.distributed.shutdown()


if __name__ == "__main__":
  {"steps": run_steps, "restore": run_restore, "multihost": run_multihost}[sys.argv[1]](sys.argv[2])
