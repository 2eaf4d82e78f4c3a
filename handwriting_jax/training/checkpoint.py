"""Orbax checkpoints in WORKDIR/checkpoints: one tree (train state) plus JSON metadata.

The metadata holds what a checkpoint needs to be used on its own: the config, the alphabet, the normalisation
statistics and the data-iterator state, and a checksum of the saved arrays: a step whose arrays read back with other
bytes (a flipped bit on disk, a copy gone wrong) or non-finite values is refused like a cut one. A workdir written by
an incompatible config is refused with the fields that differ.
"""

import contextlib
import json
import logging
import os
import shutil
import sys
import warnings
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from handwriting_jax.config import defaults
from handwriting_jax.errors import UserError

# Config groups whose change makes a checkpoint unusable (shapes or meaning of the parameters).
_COMPATIBILITY_FIELDS = (
  "model.mode",
  "model.num_layers",
  "model.hidden_size",
  "model.num_mixtures",
  "model.num_window_gaussians",
  "model.peepholes",
  "model.window_variant",
  "data.source",
  "data.alphabet",
  "data.downsample",
  "data.normalise_mean",
  "optim.name",
  "optim.weight_noise",
  "train.ema_decay",
)
# What a network started from another checkpoint (`train.init_from`) must share with it.
NETWORK_FIELDS = tuple(f for f in _COMPATIBILITY_FIELDS if not f.startswith(("optim.", "train.")))


_UNRETRIEVED = ("Future exception was never retrieved", "Task exception was never retrieved")


class _DropUnretrievedReadErrors(logging.Filter):
  """Orbax reads a checkpoint's arrays concurrently; when one read fails (a broken file, reported once by
  `first_intact`) the others' futures (or, on a busy machine, tasks) die unread and asyncio would log each with a
  long TensorStore spec at exit."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_UNRETRIEVED)


class _DropOrbaxSaveErrors(logging.Filter):
  """Orbax logs a failed background save with its tracebacks from several threads; `Checkpointer` raises it again
  as one CheckpointSaveError, so those records are dropped."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname)


logging.getLogger("asyncio").addFilter(_DropUnretrievedReadErrors())
logging.getLogger("absl").addFilter(_DropOrbaxSaveErrors())


def _drop_late_read_callbacks(previous: Callable) -> Callable:
  """An unraisable-exception hook that drops TensorStore's late callbacks into the event loop of a restore that
  already failed ("Event loop is closed", one traceback per abandoned read: hundreds when every step is broken);
  everything else goes to `previous`."""

  def hook(unraisable) -> None:
    if unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed":
      return
    previous(unraisable)

  return hook


sys.unraisablehook = _drop_late_read_callbacks(sys.unraisablehook)


class IncompatibleWorkdirError(UserError, ValueError):
  """The workdir holds checkpoints written by a config this run cannot continue."""


class NoCheckpointError(UserError, FileNotFoundError):
  """A workdir without any checkpoint where one is required."""


class CheckpointSaveError(UserError, OSError):
  """A checkpoint could not be written (a full disk, a lost mount): one line, with the newest step on disk."""


class CheckpointReadError(UserError, ValueError):
  """No checkpoint of a workdir (or not the one asked for) can be read back."""


class CheckpointCorruptError(UserError, ValueError):
  """A checkpoint's arrays read back, but not as they were saved (checksum) or with non-finite values."""


def _host_array(leaf) -> np.ndarray:
  """A leaf as a host array; of a replicated multi-process array, this process's copy."""
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
    leaf = leaf.addressable_data(0)
  return np.asarray(leaf)


def tree_checksum(tree) -> str:
  """CRC-32 of every array of `tree` (its shape, dtype and bytes, in leaf order), as 8 hex digits: saved with each
  checkpoint and checked when it is read back."""
  crc = 0
  for leaf in jax.tree.leaves(tree):
    a = np.ascontiguousarray(_host_array(leaf))
    crc = zlib.crc32(f"{a.shape}{a.dtype.str}".encode(), crc)
    crc = zlib.crc32(a.view(np.uint8).reshape(-1), crc)
  return f"{crc:08x}"


def verify(tree, metadata: dict, where: str) -> None:
  """CheckpointCorruptError when `tree` (as read back) has non-finite values or differs from the checksum in its
  `metadata` (checkpoints written before checksums were kept are only checked for finite values)."""
  for leaf in jax.tree.leaves(tree):
    a = _host_array(leaf)
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
      raise CheckpointCorruptError(f"{where} holds non-finite values")
  saved = metadata.get("checksum")
  if saved is not None and saved != (got := tree_checksum(tree)):
    raise CheckpointCorruptError(
      f"{where}: its arrays read back with checksum {got}, not the {saved} saved with them (damaged on disk)"
    )


def short_reason(e: BaseException, limit: int = 160) -> str:
  """The first line of an exception's message, cut to `limit` characters (TensorStore messages run long)."""
  text = (str(e).strip().splitlines() or [""])[0]
  return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def to_jsonable(tree):
  """Numpy arrays and scalars to lists and Python numbers, recursively (for JSON metadata)."""
  if isinstance(tree, dict):
    return {k: to_jsonable(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [to_jsonable(v) for v in tree]
  if isinstance(tree, (np.ndarray, np.generic)):
    return tree.tolist()
  return tree


def _lookup(cfg: dict, field: str):
  value = cfg
  for part in field.split("."):
    if not isinstance(value, dict) or part not in value:
      return None
    value = value[part]
  return value


def check_compatible(
  saved_config: dict,
  config: ml_collections.ConfigDict,
  path: str,
  fields: Sequence[str] = _COMPATIBILITY_FIELDS,
  advice: str = "Use a new --workdir, or the config that wrote this one.",
) -> None:
  """Raise IncompatibleWorkdirError listing every compatibility field (of `fields`) that differs, then `advice`."""
  saved_config = defaults.with_defaults(saved_config).to_dict()
  current = json.loads(config.to_json_best_effort())
  diffs = [
    f"config.{f}: checkpoint has {_lookup(saved_config, f)!r}, this run has {_lookup(current, f)!r}"
    for f in fields
    if _lookup(saved_config, f) != _lookup(current, f)
  ]
  if diffs:
    raise IncompatibleWorkdirError(
      f"the checkpoints in {path} were written by an incompatible config:\n  " + "\n  ".join(diffs) + "\n" + advice
    )


# TrainState fields saved under another name: the name checkpoints have always stored them under.
_DISK_NAMES = {"log_sigma": "noise"}


def _on_disk(state):
  """The tree a state is saved as: a NamedTuple (TrainState) as a dict of its fields that are not None (by their
  `_DISK_NAMES`), so that states without weight noise keep the layout of the checkpoints written before it existed."""
  if hasattr(state, "_fields"):
    return {_DISK_NAMES.get(k, k): v for k, v in state._asdict().items() if v is not None}
  return state


class Checkpointer:
  """Periodic, asynchronous saves of (train state, metadata), keeping the newest `keep`."""

  def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
    self.path = os.path.abspath(os.path.join(workdir, "checkpoints"))
    options = ocp.CheckpointManagerOptions(  # a run's start removes the temporary folder of a save it never finished
      preservation_policy=checkpoint_managers.LatestN(keep),
      create=not read_only,
      read_only=read_only,
      cleanup_tmp_directories=not read_only,
    )
    self.manager = ocp.CheckpointManager(self.path, options=options)

  def latest_step(self) -> int | None:
    """Newest saved step, or None."""
    return self.manager.latest_step()

  def save(self, step: int, state, metadata: dict) -> None:
    """Start an asynchronous save of `state` (a pytree of arrays) and `metadata` (JSON-able) at `step`; a failure of
    this save or of the previous one (they finish in the background) is a CheckpointSaveError. A save that cannot
    fit in the free space is refused before it starts (no half-written step, no background errors)."""
    need, free = self._expected_bytes(state), shutil.disk_usage(self.path).free
    if free < need:
      raise self._save_failed(
        f"no space left on device ({free / 1e6:.2f} MB free, a checkpoint takes about {need / 1e6:.2f} MB)", wait=False
      )
    tree = _on_disk(state)
    metadata = {**metadata, "checksum": tree_checksum(tree)}
    try:
      self.manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(tree), metadata=ocp.args.JsonSave(to_jsonable(metadata))),
      )
    except Exception as e:  # noqa: BLE001  TensorStore and Orbax raise many kinds
      raise self._save_failed(self._reason(e)) from None

  def _expected_bytes(self, state) -> int:
    """About what the next save writes: the newest complete step's size, else the arrays' bytes, with a margin."""
    newest = self.manager.latest_step()
    folder = os.path.join(self.path, str(newest)) if newest is not None else ""
    if folder and os.path.isdir(folder):
      size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)
    else:
      size = sum(int(np.asarray(x).nbytes) for x in jax.tree.leaves(state))
    return int(size * 1.2) + (64 << 10)

  @staticmethod
  def _reason(e: BaseException) -> str:
    """A failed save's cause in a few words."""
    return "no space left on device" if "No space left on device" in str(e) else short_reason(e)

  def _save_failed(self, reason: str, wait: bool = True) -> CheckpointSaveError:
    """The one-line error of a failed save; a partial step stays in its temporary folder, out of Orbax's view."""
    if wait:
      with contextlib.suppress(Exception):  # the same failure again
        self.manager.wait_until_finished()
      self.manager.reload()
    newest = self.manager.latest_step()
    return CheckpointSaveError(
      f"could not save a checkpoint in {self.path}: {reason}; the newest complete checkpoint is "
      + (f"step {newest}" if newest is not None else "none")
      + "; make room and run the same command to resume"
    )

  def restore_metadata(self, step: int | None = None) -> dict:
    """Metadata of `step` (default: newest); NoCheckpointError when there is none."""
    step = self._resolve(step)
    return self.manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))["metadata"]

  def restore(self, abstract_state, step: int | None = None):
    """(state, metadata) of `step` (default: newest), restored into the structure of `abstract_state`."""
    step = self._resolve(step)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _on_disk(abstract_state))
    out = self.manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), metadata=ocp.args.JsonRestore())
    )
    state = out["state"]
    verify(state, out["metadata"], f"checkpoint step {step} in {self.path}")
    if hasattr(abstract_state, "_fields"):  # a NamedTuple: its None fields were not saved
      state = type(abstract_state)(**{k: state.get(_DISK_NAMES.get(k, k)) for k in abstract_state._fields})
    return state, out["metadata"]

  def first_intact(
    self, load: Callable[[int], Any], steps: Sequence[int] | None = None
  ) -> tuple[Any, int, list[tuple[int, BaseException]]]:
    """(load(step), step, failures) for the newest of `steps` (default: every saved step) that `load` reads back;
    `failures` lists the newer (step, error) that it could not read. CheckpointReadError when none can be read:
    then nothing is judged corrupt (the same failure everywhere points at the caller, not at the files)."""
    steps = sorted(self.manager.all_steps(), reverse=True) if steps is None else list(steps)
    if not steps:
      raise NoCheckpointError(f"no checkpoint in {self.path}")
    failures = []
    for step in steps:
      try:
        return load(step), step, failures
      except Exception as e:  # noqa: BLE001  any unreadable file: TensorStore, JSON, missing
        failures.append((step, e))
        # Orbax's other reads of this step were abandoned mid-flight; their coroutines are collected unawaited
        # later, a RuntimeWarning each. The failure itself is reported once (above, or in the error below).
        warnings.filterwarnings("ignore", message=r"coroutine '.*' was never awaited", category=RuntimeWarning)
    step, e = failures[0]
    raise CheckpointReadError(
      f"cannot read checkpoint step {step} in {self.path} ({short_reason(e)})"
      + (f", nor any of the {len(failures) - 1} older ones" if len(failures) > 1 else "")
    )

  def set_aside(self, step: int) -> str:
    """Rename a broken step's folder to `<step>.corrupt` (out of Orbax's view, nothing deleted); its new path."""
    src = os.path.join(self.path, str(step))
    dst, n = f"{src}.corrupt", 1
    while os.path.exists(dst):
      dst, n = f"{src}.corrupt.{n}", n + 1
    os.rename(src, dst)
    self.manager.reload()
    return dst

  def _resolve(self, step: int | None) -> int:
    step = self.latest_step() if step is None else step
    if step is None:
      raise NoCheckpointError(f"no checkpoint in {self.path}")
    return step

  def close(self) -> None:
    """Finish pending saves and release the manager (CheckpointSaveError if the last save failed)."""
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      raise self._save_failed(self._reason(e)) from None
    finally:
      self.manager.close()
