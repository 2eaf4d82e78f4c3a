"""Training: loss decreases, a golden step against an independent reference, exact resume (also after SIGKILL),
refused workdirs, non-finite losses, one-line CLI errors, logs and TensorBoard events.

Every run here uses the tiny synthesis config on a tiny embedded corpus. The runs compile the same jitted steps, and
the suite's persistent compilation cache (`conftest.compile_cache`) is passed on to their subprocesses: a run after
the first one costs about a second instead of several.
"""

import functools
import glob
import hashlib
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import time

import chex
import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx
from tensorboardX.proto import event_pb2

from handwriting_jax.config import defaults
from handwriting_jax.data import dataset as dataset_lib
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.model import mdn, networks, reference
from handwriting_jax.training import checkpoint as ckpt_lib
from handwriting_jax.training import loop as train
from handwriting_jax.training import optim, parallel, workdir_lock
from handwriting_jax.training import step as step_lib
from handwriting_jax.writing import writer as writer_lib

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The corpus every run trains on: small enough to generate in a fraction of a second; one bucket, so that a run
# compiles one train step and one evaluation step.
_DATA_OVERRIDES = {"embedded.num_lines": 48, "embedded.valid_lines": 8, "num_buckets": 1}
_REFERENCE_STEPS = 8


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory) -> str:
  """config.data.cache_dir of every run (unused by the embedded source, but never the user's ~/.cache)."""
  return str(tmp_path_factory.mktemp("data_cache"))


def tiny_config(data_cache: str, **train_fields) -> ml_collections.ConfigDict:
  """configs/synthesis.py:tiny on the tiny corpus, no samples; `train_fields` override config.train."""
  cfg = defaults.apply_variant(defaults.base_config("synthesis"), "tiny")
  cfg.data.update_from_flattened_dict(_DATA_OVERRIDES)
  cfg.data.cache_dir = data_cache
  cfg.train.sample_every = 0
  for k, v in train_fields.items():
    cfg.train[k] = v
  return cfg


def restore(workdir: str, cfg: ml_collections.ConfigDict, step: int | None = None):
  """(train state, metadata) of a checkpoint in `workdir`, restored into the structure `cfg` builds."""
  ckpt = ckpt_lib.Checkpointer(workdir, read_only=True)
  try:
    alphabet = Alphabet(ckpt.restore_metadata(step)["alphabet"])
    tx = optim.make_optimizer(cfg.optim, cfg.train.num_steps)
    model = lambda: networks.create_model(cfg, alphabet.size)
    ema = cfg.train.ema_decay > 0
    _, abstract = nnx.eval_shape(lambda: step_lib.create_train_state(model(), tx, ema=ema))
    return ckpt.restore(abstract, step)
  finally:
    ckpt.close()


def snapshot(folder: str) -> dict[str, str]:
  """sha256 of every file under `folder`, by relative path."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


def checkpoint_steps(workdir: str) -> list[int]:
  """Finished checkpoints (Orbax renames a step's folder to its number once it is complete)."""
  folder = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit()) if os.path.isdir(folder) else []


def read_events(folder: str) -> dict[str, dict[int, float]]:
  """Scalars of every TensorBoard event file under `folder` (TFRecord framing: length, crc, Event, crc)."""
  scalars: dict[str, dict[int, float]] = {}
  for path in glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"), recursive=True):
    with open(path, "rb") as f:
      data = f.read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos : pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
      pos += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  return scalars


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_cache):
  """(config, workdir, metrics) of an uninterrupted run that writes samples at its end (the resumed run doesn't)."""
  cfg = tiny_config(
    data_cache, num_steps=_REFERENCE_STEPS, checkpoint_every=4, eval_every=4, log_every=2, sample_every=_REFERENCE_STEPS
  )
  cfg.sample.texts = ("ab",)
  cfg.sample.max_steps_per_char = 10
  workdir = str(tmp_path_factory.mktemp("reference"))
  metrics = train.train_and_evaluate(cfg, workdir)
  return cfg, workdir, metrics


# ---------------------------------------------------------------------------------------------------------------
# train_and_evaluate.


def test_resume_is_bitwise_identical_to_an_uninterrupted_run(reference_run, data_cache, tmp_path):
  cfg_a, workdir_a, metrics_a = reference_run
  workdir_b = str(tmp_path / "b")
  half = tiny_config(data_cache, num_steps=_REFERENCE_STEPS // 2, checkpoint_every=4, eval_every=4, log_every=2)
  train.train_and_evaluate(half, workdir_b)
  assert checkpoint_steps(workdir_b) == [_REFERENCE_STEPS // 2]
  metrics_b = train.train_and_evaluate(cfg_a, workdir_b)

  with open(os.path.join(workdir_b, "train.log"), encoding="utf-8") as f:
    log = f.read()
  assert re.search(rf"resumed from \S+ at step {_REFERENCE_STEPS // 2}\b", log), log
  assert checkpoint_steps(workdir_a) == checkpoint_steps(workdir_b) == [_REFERENCE_STEPS // 2, _REFERENCE_STEPS]
  state_a, meta_a = restore(workdir_a, cfg_a)
  state_b, meta_b = restore(workdir_b, cfg_a)
  assert int(state_a.step) == int(state_b.step) == _REFERENCE_STEPS
  for leaf_a, leaf_b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
    np.testing.assert_array_equal(np.asarray(leaf_a), np.asarray(leaf_b))
  assert meta_a["data_iter"] == meta_b["data_iter"]
  assert metrics_a == metrics_b  # the final validation loss, to the last bit
  # Training moved the weights after the restart, so the equality above is not that of two restored copies.
  state_half, _ = restore(workdir_a, cfg_a, step=_REFERENCE_STEPS // 2)
  assert not np.array_equal(np.asarray(state_half.params["w_y"][...]), np.asarray(state_a.params["w_y"][...]))


def test_incompatible_workdir_is_refused_and_left_intact(reference_run, data_cache, tmp_path):
  cfg, workdir_a, _ = reference_run
  workdir = str(tmp_path / "copy")
  shutil.copytree(workdir_a, workdir)
  before = snapshot(workdir)
  assert any(p.startswith("checkpoints") for p in before)
  bigger = tiny_config(data_cache, num_steps=2 * _REFERENCE_STEPS)
  bigger.model.hidden_size = 2 * cfg.model.hidden_size
  with pytest.raises(
    ckpt_lib.IncompatibleWorkdirError,
    match=rf"config\.model\.hidden_size: checkpoint has {cfg.model.hidden_size}, this run has "
    rf"{2 * cfg.model.hidden_size}",
  ) as info:
    train.train_and_evaluate(bigger, workdir)
  assert "num_layers" not in str(info.value)  # only the fields that differ
  assert snapshot(workdir) == before


def test_a_moving_average_cannot_be_added_to_a_run_that_kept_none(reference_run, data_cache, tmp_path):
  """The average is part of the checkpointed state: resuming without one with train.ema_decay > 0 is refused."""
  _, workdir_a, _ = reference_run
  workdir = str(tmp_path / "copy")
  shutil.copytree(workdir_a, workdir)
  with pytest.raises(
    ckpt_lib.IncompatibleWorkdirError, match=r"config\.train\.ema_decay: checkpoint has 0\.0, this run has 0\.9"
  ):
    train.train_and_evaluate(tiny_config(data_cache, num_steps=2 * _REFERENCE_STEPS, ema_decay=0.9), workdir)


_HOLD_LOCK = """
import sys, time
from handwriting_jax.training import workdir_lock
workdir_lock.WorkdirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_run_on_a_locked_workdir_is_refused_and_a_dead_runs_lock_is_not(reference_run, data_cache, tmp_path):
  """Two runs on one workdir: the second is refused at once, naming the first, and changes nothing; after the first
  is killed with SIGKILL its lock file stays but blocks nothing; a run that ends removes it."""
  cfg, workdir_a, _ = reference_run
  workdir = str(tmp_path / "copy")
  shutil.copytree(workdir_a, workdir)
  before = snapshot(workdir)
  holder = subprocess.Popen(
    [sys.executable, "-c", _HOLD_LOCK, workdir],
    stdout=subprocess.PIPE,
    text=True,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(workdir_lock.WorkdirInUseError, match=rf"in use by another training run \(pid {holder.pid} on "):
      train.train_and_evaluate(tiny_config(data_cache, num_steps=2 * _REFERENCE_STEPS), workdir)
    assert {k: v for k, v in snapshot(workdir).items() if k != workdir_lock.LOCK_FILE} == before
  finally:
    holder.kill()
    holder.wait()
  assert os.path.exists(os.path.join(workdir, workdir_lock.LOCK_FILE))  # left by the killed process
  train.train_and_evaluate(cfg, workdir)  # not blocked by it
  assert not os.path.exists(os.path.join(workdir, workdir_lock.LOCK_FILE))


def test_a_workdir_that_is_a_file_or_cannot_be_written_is_one_error(data_cache, tmp_path):
  cfg = tiny_config(data_cache, num_steps=1)
  path = tmp_path / "file"
  path.write_text("not a folder")
  with pytest.raises(train.WorkdirError, match="is a file, not a folder"):
    train.train_and_evaluate(cfg, str(path))
  blocked = tmp_path / "blocked"
  (blocked / workdir_lock.LOCK_FILE).mkdir(parents=True)  # stands in for a folder this run cannot write to
  with pytest.raises(train.WorkdirError, match="cannot write to the workdir"):
    train.train_and_evaluate(cfg, str(blocked))


def test_resuming_with_another_batch_size_is_refused_and_left_intact(reference_run, data_cache, tmp_path):
  _, workdir_a, _ = reference_run
  workdir = str(tmp_path / "copy")
  shutil.copytree(workdir_a, workdir)
  before = snapshot(workdir)
  other = tiny_config(data_cache, num_steps=2 * _REFERENCE_STEPS)
  other.data.batch_size //= 2
  with pytest.raises(ckpt_lib.IncompatibleWorkdirError, match="cannot continue with this run's batches"):
    train.train_and_evaluate(other, workdir)
  after = snapshot(workdir)  # the log has the refused run's first lines; the checkpoints are untouched
  assert {k: v for k, v in after.items() if k.startswith("checkpoints")} == {
    k: v for k, v in before.items() if k.startswith("checkpoints")
  }


def test_checkpoint_verify_catches_changed_bytes_and_non_finite_values():
  tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.int32(3)}
  metadata = {"checksum": ckpt_lib.tree_checksum(tree)}
  ckpt_lib.verify(tree, metadata, "step 3")  # intact
  changed = {**tree, "w": tree["w"].copy()}
  changed["w"][1, 2] = np.nextafter(np.float32(5), np.float32(6))  # one bit of one number
  with pytest.raises(ckpt_lib.CheckpointCorruptError, match="step 3: its arrays read back with checksum"):
    ckpt_lib.verify(changed, metadata, "step 3")
  reshaped = {**tree, "w": tree["w"].reshape(3, 2)}  # the same bytes in another shape
  assert ckpt_lib.tree_checksum(reshaped) != metadata["checksum"]
  with pytest.raises(ckpt_lib.CheckpointCorruptError, match="non-finite"):
    ckpt_lib.verify({**tree, "w": np.full((2, 3), np.nan, np.float32)}, {}, "step 3")
  ckpt_lib.verify(tree, {}, "step 3")  # written before checksums were kept: only finiteness is checked


def _leaves(tree) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def test_moving_average_follows_its_equation_and_is_what_is_checkpointed_and_written_with(data_cache, tmp_path):
  """train.ema_decay: after step t the average is d·ema + (1−d)·params with d = min(decay, (1+t)/(10+t)) (NumPy
  reference over steps that cross from the warm-up to the cap); a run checkpoints it, `load_writer` and
  `export_model` use it and `raw_weights` gives the trained parameters."""
  decay = 0.3  # (1+t)/(10+t) passes 0.3 at t = 3: both branches of the min run
  cfg = tiny_config(data_cache, num_steps=6, checkpoint_every=6, eval_every=6, log_every=2, ema_decay=decay)
  dataset = dataset_lib.load_dataset(cfg.data)
  tx = optim.make_optimizer(cfg.optim, cfg.train.num_steps)
  graphdef, state = step_lib.create_train_state(networks.create_model(cfg, dataset.alphabet.size), tx, ema=True)
  par = parallel.DataParallel(cfg, graphdef, tx)
  expected = _leaves(state.params)
  state = par.put_state(state)
  batch = train.CurriculumBatches(dataset.train, dataset.alphabet, cfg.data).next(0)
  for t in range(6):
    state, _ = par.train_step(state, batch)
    d = min(decay, (1 + t) / (10 + t))
    expected = [d * e + (1 - d) * p for e, p in zip(expected, _leaves(par.global_state(state).params), strict=True)]
  final = par.global_state(state)
  for got, want in zip(_leaves(final.ema), expected, strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert any(not np.allclose(a, b) for a, b in zip(_leaves(final.ema), _leaves(final.params)))

  workdir = str(tmp_path / "run")
  train.train_and_evaluate(cfg, workdir)
  saved, _ = restore(workdir, cfg)
  averaged = writer_lib.load_writer(workdir)
  raw = writer_lib.load_writer(workdir, raw_weights=True)
  assert averaged.ema and not raw.ema
  for got, want in ((averaged, saved.ema), (raw, saved.params)):
    for a, b in zip(_leaves(nnx.state(got.model, nnx.Param)), _leaves(want), strict=True):
      np.testing.assert_array_equal(a, b)
  exported = writer_lib.load_writer(os.path.dirname(writer_lib.export_model(workdir, str(tmp_path / "export"))))
  assert exported.ema
  for a, b in zip(_leaves(nnx.state(exported.model, nnx.Param)), _leaves(saved.ema), strict=True):
    np.testing.assert_array_equal(a, b)


def _break_checkpoint(step_dir: str, damage: str) -> None:
  """Damage one saved step the ways a crash or a bad disk does."""
  if damage == "truncated_data":
    data_files = [
      p for p in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True) if os.path.isfile(p)
    ]
    assert data_files
    for path in data_files:
      with open(path, "r+b") as f:
        f.truncate(max(os.path.getsize(path) // 3, 1))
  elif damage == "flipped_bytes":
    for path in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True):
      with open(path, "r+b") as f:
        data = bytearray(f.read())
        data[len(data) // 2 : len(data) // 2 + 8] = bytes(255 - b for b in data[len(data) // 2 : len(data) // 2 + 8])
        f.seek(0)
        f.write(data)
  elif damage == "flipped_values":  # the array payload changed in place: it still decodes, only the checksum knows
    payload = max(glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True), key=os.path.getsize)
    with open(payload, "r+b") as f:
      f.seek(os.path.getsize(payload) // 3)
      chunk = f.read(16)
      f.seek(-len(chunk), os.SEEK_CUR)
      f.write(bytes(255 - b for b in chunk))
  elif damage == "metadata_missing":
    os.remove(os.path.join(step_dir, "metadata", "metadata"))
  elif damage == "metadata_cut":
    path = os.path.join(step_dir, "metadata", "metadata")
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
  elif damage == "tree_metadata_gone":
    os.remove(os.path.join(step_dir, "state", "_METADATA"))
  else:
    raise ValueError(damage)


@pytest.mark.parametrize(
  "damage",
  ["truncated_data", "flipped_bytes", "flipped_values", "metadata_missing", "metadata_cut", "tree_metadata_gone"],
)
def test_corrupt_newest_checkpoint_is_set_aside_and_the_run_resumes_from_an_intact_one(
  reference_run, data_cache, tmp_path, damage
):
  cfg, workdir_a, metrics_a = reference_run
  workdir = str(tmp_path / "copy")
  shutil.copytree(workdir_a, workdir)
  steps = checkpoint_steps(workdir)
  newest = os.path.join(workdir, "checkpoints", str(steps[-1]))
  _break_checkpoint(newest, damage)
  metrics = train.train_and_evaluate(cfg, workdir)
  with open(os.path.join(workdir, "train.log"), encoding="utf-8") as f:
    log = f.read()
  assert f"warning: checkpoint step {steps[-1]} cannot be read" in log, log
  assert re.search(rf"resumed from \S+ at step {steps[-2]}\b", log), log
  assert os.path.isdir(newest + ".corrupt")  # kept for a look, out of Orbax's view
  assert checkpoint_steps(workdir) == steps  # the step was trained and saved again
  state, _ = restore(workdir, cfg)
  state_a, _ = restore(workdir_a, cfg)
  for leaf, leaf_a in zip(jax.tree.leaves(state), jax.tree.leaves(state_a), strict=True):
    np.testing.assert_array_equal(np.asarray(leaf), np.asarray(leaf_a))  # as if nothing had happened
  assert metrics == metrics_a


def test_when_no_checkpoint_can_be_read_nothing_is_moved(reference_run, data_cache, tmp_path):
  cfg, workdir_a, _ = reference_run
  workdir = str(tmp_path / "copy")
  shutil.copytree(workdir_a, workdir)
  for step in checkpoint_steps(workdir):
    _break_checkpoint(os.path.join(workdir, "checkpoints", str(step)), "truncated_data")
  before = snapshot(workdir)
  with pytest.raises(ckpt_lib.CheckpointReadError, match=r"cannot read checkpoint step \d+ in .* nor any of the"):
    train.train_and_evaluate(cfg, workdir)
  after = snapshot(workdir)
  assert {k: v for k, v in after.items() if k.startswith("checkpoints")} == {
    k: v for k, v in before.items() if k.startswith("checkpoints")
  }


def test_when_no_checkpoint_can_be_read_the_command_says_so_in_one_line(
  reference_run, data_cache, compile_cache, tmp_path
):
  """The command line, with every step broken: one error line, no tracebacks of the reads abandoned after it."""
  _, workdir_a, _ = reference_run
  workdir = str(tmp_path / "copy")
  shutil.copytree(workdir_a, workdir)
  for step in checkpoint_steps(workdir):
    _break_checkpoint(os.path.join(workdir, "checkpoints", str(step)), "truncated_data")
  proc = subprocess.run(
    _main_args(workdir, data_cache, f"--config.train.num_steps={2 * _REFERENCE_STEPS}"),
    cwd=_REPO,
    env=_env(compile_cache),
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[:3000]
  lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: cannot read checkpoint step"), proc.stderr[-3000:]


def test_the_temporary_folder_of_a_save_cut_short_is_removed_when_the_run_resumes(reference_run, data_cache, tmp_path):
  """A save interrupted before it finished (a second Ctrl-C, a kill) leaves a temporary folder; the next run on
  the workdir removes it and resumes from the newest complete step."""
  _, workdir_a, _ = reference_run
  workdir = str(tmp_path / "copy")
  shutil.copytree(workdir_a, workdir)
  partial = os.path.join(workdir, "checkpoints", f"{2 * _REFERENCE_STEPS}.orbax-checkpoint-tmp-1796000000")
  shutil.copytree(os.path.join(workdir, "checkpoints", str(_REFERENCE_STEPS)), partial)
  train.train_and_evaluate(tiny_config(data_cache, num_steps=_REFERENCE_STEPS + 2, checkpoint_every=2), workdir)
  assert not os.path.exists(partial)
  assert checkpoint_steps(workdir)[-1] == _REFERENCE_STEPS + 2


def test_non_finite_loss_stops_without_saving_it(data_cache, tmp_path, monkeypatch):
  poisoned_step = 5
  original_next = train.CurriculumBatches.next

  def poisoned_next(self, step):
    batch = original_next(self, step)
    if step + 1 == poisoned_step:  # `next(step)` gives the batch of training step step + 1
      batch = {**batch, "inputs": np.full_like(batch["inputs"], np.nan)}
    return batch

  monkeypatch.setattr(train.CurriculumBatches, "next", poisoned_next)
  cfg = tiny_config(
    data_cache, num_steps=_REFERENCE_STEPS, checkpoint_every=2, eval_every=_REFERENCE_STEPS, log_every=2
  )
  workdir = str(tmp_path / "nan")
  with pytest.raises(train.NonFiniteLossError, match=rf"at step {poisoned_step}\b"):
    train.train_and_evaluate(cfg, workdir)
  assert checkpoint_steps(workdir) == [2, 4]
  for step in (2, 4):
    state, _ = restore(workdir, cfg, step)
    chex.assert_tree_all_finite(state)


def test_logs_samples_and_tensorboard_events(reference_run):
  _, workdir, metrics = reference_run
  assert np.isfinite(metrics["valid_loss"]) and np.isfinite(metrics["valid_loss_per_step"])
  with open(os.path.join(workdir, "train.log"), encoding="utf-8") as f:
    lines = f.read().splitlines()
  assert any(re.match(r"synthesis network: [\d,]+ parameters", ln) for ln in lines), lines
  progress = [ln for ln in lines if re.match(rf"step \d+/{_REFERENCE_STEPS} loss=\S+ loss_per_step=", ln)]
  assert [int(re.match(r"step (\d+)/", ln).group(1)) for ln in progress] == [2, 4, 6, 8], lines
  validation = [ln for ln in lines if " validation: " in ln]
  assert [int(ln.split()[1]) for ln in validation] == [4, 8], lines
  assert f"{metrics['valid_loss']:.2f} nats/sequence" in validation[-1]
  assert os.path.exists(os.path.join(workdir, "config.json"))
  pngs = glob.glob(os.path.join(workdir, "samples", "*.png"))
  assert pngs and any(re.match(rf"step {_REFERENCE_STEPS} samples: ", ln) for ln in lines), lines
  for path in pngs:
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n", path

  scalars = read_events(os.path.join(workdir, "tensorboard"))
  assert sorted(scalars["loss"]) == [2, 4, 6, 8], scalars.keys()
  assert sorted(scalars["valid_loss"]) == [4, 8]
  assert scalars["valid_loss"][8] == pytest.approx(metrics["valid_loss"], rel=1e-6)
  assert all(np.isfinite(v) for v in scalars["loss"].values())


def test_compare_runs_reads_the_train_log_as_written(reference_run, tmp_path, capsys, experiment):
  """experiments/compare_runs.py parses the trainer's own log lines: the same losses as the TensorBoard events."""
  compare_runs = experiment("compare_runs")
  _, workdir, metrics = reference_run
  train_loss, valid_loss = compare_runs.read_log(workdir)
  scalars = read_events(os.path.join(workdir, "tensorboard"))
  assert sorted(train_loss) == sorted(scalars["loss"]) == [2, 4, 6, 8]
  for s in train_loss:
    assert train_loss[s] == pytest.approx(scalars["loss"][s], rel=1e-3, abs=1e-2)
  assert valid_loss[8] == pytest.approx(metrics["valid_loss"], abs=0.006)
  compare_runs.main([workdir, workdir, "--every=2"])
  out = capsys.readouterr().out
  assert "training loss mean |Δ| 0.00 nats/sequence over 4 logged steps" in out, out
  with pytest.raises(SystemExit, match=r"no train.log"):
    compare_runs.main([workdir, str(tmp_path)])


# ---------------------------------------------------------------------------------------------------------------
# Steps (after the runs above: the loss test reuses their compiled step).


def test_loss_decreases_on_a_fixed_batch(data_cache):
  cfg = tiny_config(data_cache)
  dataset = dataset_lib.load_dataset(cfg.data)
  tx = optim.make_optimizer(cfg.optim, cfg.train.num_steps)
  graphdef, state = step_lib.create_train_state(networks.create_model(cfg, dataset.alphabet.size), tx)
  par = parallel.DataParallel(cfg, graphdef, tx)  # the compiled step train_and_evaluate runs
  state = par.put_state(state)
  batch = train.CurriculumBatches(dataset.train, dataset.alphabet, cfg.data).next(0)
  metrics = []
  for _ in range(30):
    state, m = par.train_step(state, batch)
    metrics.append(m)
  metrics = jax.device_get(metrics)
  losses = np.array([m["loss"] for m in metrics])
  assert all(bool(m["finite"]) for m in metrics)
  assert int(jax.device_get(par.global_state(state).step)) == 30
  assert losses[-1] < 0.6 * losses[0], losses
  assert np.mean(losses[-5:]) < np.mean(losses[5:10]) < np.mean(losses[:5]), losses


def _synthetic_batch(rng: np.random.Generator, alphabet_size: int) -> dict[str, np.ndarray]:
  """A teacher-forced batch of 3 lines of different lengths (9, 7, 5 points; 4, 3, 2 characters)."""
  b, t, u = 3, 9, 4
  mask_BxT = (np.arange(t)[None] < np.array([[9], [7], [5]])).astype(np.float32)
  targets_BxTx3 = np.concatenate([rng.normal(size=(b, t, 2)), rng.random((b, t, 1)) < 0.3], -1).astype(np.float32)
  targets_BxTx3 *= mask_BxT[..., None]
  inputs_BxTx3 = np.concatenate([np.tile([[[0.0, 0.0, 1.0]]], (b, 1, 1)), targets_BxTx3[:, :-1]], 1)
  char_mask_BxU = (np.arange(u)[None] < np.array([[4], [3], [2]])).astype(np.float32)
  chars_BxU = (rng.integers(2, alphabet_size, size=(b, u)) * char_mask_BxU).astype(np.int32)
  return {
    "inputs": inputs_BxTx3.astype(np.float32),
    "targets": targets_BxTx3,
    "mask": mask_BxT,
    "chars": chars_BxU,
    "char_mask": char_mask_BxU,
  }


def test_golden_train_step_matches_independent_reference(data_cache):
  cfg = tiny_config(data_cache)
  cfg.optim = defaults.optim_config()  # the paper's RMSProp, Graves clipping inside backprop
  alphabet_size = 12
  batch = _synthetic_batch(np.random.default_rng(0), alphabet_size)
  tx = optim.make_optimizer(cfg.optim, cfg.train.num_steps)
  graphdef, state0 = step_lib.create_train_state(networks.create_model(cfg, alphabet_size), tx)
  params0 = jax.tree.map(np.asarray, state0.params)
  state1, metrics = jax.jit(functools.partial(step_lib.train_step, graphdef, tx))(state0, batch)

  # Reference: the same weights in the network differentiated by plain autodiff of lax.scan (not the hand-written
  # hoisted backward the train step runs), the loss of eqs. 23-26 on its output, then eqs. 38-41 in NumPy.
  graphdef_ref, params_ref = nnx.split(reference.create_model(cfg, alphabet_size), nnx.Param)
  chex.assert_trees_all_equal(jax.tree.map(np.asarray, params_ref), params0)

  def loss_fn(params):
    y_hat_BxTxY, _, _ = nnx.merge(graphdef_ref, params)(batch["inputs"], batch["chars"], batch["char_mask"])
    return mdn.sequence_loss(y_hat_BxTxY, batch["targets"], batch["mask"])

  (loss_ref, per_step_ref), grads_ref = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params_ref)
  grads_ref = jax.tree.map(lambda g: np.asarray(g, np.float64), grads_ref)
  aleph, gimel, daleth = 0.95, 1e-4, 1e-4
  delta_ref = jax.tree.map(  # first step from n = g = Δ = 0
    lambda g: -gimel * g / np.sqrt((1 - aleph) * g**2 - ((1 - aleph) * g) ** 2 + daleth), grads_ref
  )

  host = jax.device_get(metrics)
  assert bool(host["finite"]) and int(state1.step) == 1
  np.testing.assert_allclose(host["loss"], loss_ref, rtol=1e-5)
  np.testing.assert_allclose(host["loss_per_step"], per_step_ref, rtol=1e-5)
  np.testing.assert_allclose(host["loss_per_step"], host["loss"] * 3 / batch["mask"].sum(), rtol=1e-5)
  grad_norm_ref = np.sqrt(sum(np.sum(g**2) for g in jax.tree.leaves(grads_ref)))
  np.testing.assert_allclose(host["grad_norm"], grad_norm_ref, rtol=1e-4)
  new_params, old_params = jax.tree.leaves(state1.params), jax.tree.leaves(params0)
  assert len(new_params) == len(old_params) == len(jax.tree.leaves(delta_ref))
  for new, old, d_ref in zip(new_params, old_params, jax.tree.leaves(delta_ref)):
    d = np.asarray(new, np.float64) - old
    # w + Δ is rounded to float32: allow two ulps of the weight (1.0 for the forget-gate biases) besides 1e-3 of Δ.
    np.testing.assert_array_less(np.abs(d - d_ref), 1e-3 * np.abs(d_ref) + 2 * np.spacing(np.abs(old)) + 1e-12)
  assert max(np.max(np.abs(np.asarray(n) - o)) for n, o in zip(new_params, old_params)) > 1e-4  # weights moved


# ---------------------------------------------------------------------------------------------------------------
# Command line.


def _main_args(workdir: str, data_cache: str, *overrides: str) -> list[str]:
  return [
    sys.executable,
    "-m",
    "handwriting_jax.main",
    "--config=configs/synthesis.py:tiny",
    f"--workdir={workdir}",
    f"--config.data.cache_dir={data_cache}",
    "--config.train.sample_every=0",
    *(f"--config.data.{k}={v}" for k, v in _DATA_OVERRIDES.items()),
    *overrides,
  ]


def _env(compile_cache: str) -> dict[str, str]:
  return {
    **os.environ,
    "JAX_COMPILATION_CACHE_DIR": compile_cache,
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
  }


def test_full_disk_while_saving_is_one_line_and_the_run_resumes_once_there_is_room(tmp_path, data_cache, compile_cache):
  """A real full disk: a 3 MiB tmpfs, mounted in a private mount namespace (`unshare -m`)."""
  disk, workdir = tmp_path / "disk", tmp_path / "disk" / "w"
  disk.mkdir()

  def run(steps: int, log: str) -> str:
    args = _main_args(
      str(workdir),
      data_cache,
      f"--config.train.num_steps={steps}",
      "--config.train.checkpoint_every=10",
      "--config.train.eval_every=1000",
    )
    return f"{shlex.join(args)} > {tmp_path / log} 2>&1; echo $? > {tmp_path / log}.rc"

  script = "\n".join(
    [
      "set -u",
      f"mount -t tmpfs -o size=3m tmpfs {disk}",
      run(20, "first.out"),
      f"avail=$(df -k --output=avail {disk} | tail -1)",
      f"dd if=/dev/zero of={disk}/filler bs=1k count=$((avail - 100)) 2>/dev/null",
      run(60, "full.out"),
      f"rm {disk}/filler",
      run(60, "resumed.out"),
    ]
  )
  namespace = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]  # not root: a user namespace
  proc = subprocess.run(
    [*namespace, "bash", "-c", script],
    cwd=_REPO,
    env=_env(compile_cache),
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert proc.returncode == 0, proc.stdout + proc.stderr
  rc = {name: (tmp_path / f"{name}.out.rc").read_text().strip() for name in ("first", "full", "resumed")}
  assert rc == {"first": "0", "full": "1", "resumed": "0"}, rc
  full = (tmp_path / "full.out").read_text()
  assert "Traceback" not in full, full
  errors = [x for x in full.splitlines() if x.startswith("error:")]
  assert len(errors) == 1 and re.fullmatch(
    rf"error: could not save a checkpoint in {re.escape(str(workdir / 'checkpoints'))}: no space left on device "
    r"\(0\.\d\d MB free, a checkpoint takes about 0\.\d\d MB\); the newest complete checkpoint is step 20; make "
    r"room and run the same command to resume",
    errors[0],
  ), full
  assert full.rstrip().splitlines()[-1] == errors[0], full  # nothing after it
  resumed = (tmp_path / "resumed.out").read_text()
  assert "resumed from" in resumed and "at step 20" in resumed and "step 60/60" in resumed, resumed


def test_main_reports_a_bad_config_in_one_line(tmp_path, data_cache, compile_cache):
  workdir = str(tmp_path / "never")
  proc = subprocess.run(
    _main_args(workdir, data_cache, "--config.optim.learning_rate=-1"),
    cwd=_REPO,
    env=_env(compile_cache),
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  output = proc.stdout + proc.stderr
  assert proc.returncode != 0, output
  assert "Traceback" not in output, output
  errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
  assert len(errors) == 1, output
  assert re.fullmatch(r"error: config\.optim\.learning_rate: must be a finite number > 0, got -1(\.0)?", errors[0]), (
    errors
  )
  assert proc.stderr.strip().splitlines()[-1] == errors[0]
  assert not os.path.exists(workdir)  # refused before anything was written


def _run_and_signal(args: list[str], compile_cache: str, log_path, ready, sig: int) -> tuple[subprocess.Popen, bool]:
  """Start `main` with output to `log_path`, send `sig` once `ready()` (or after 90 s), wait for the exit; returns
  (the finished process, whether it was still running when signalled)."""
  with open(log_path, "w", encoding="utf-8") as out:
    proc = subprocess.Popen(args, cwd=_REPO, env=_env(compile_cache), stdout=out, stderr=subprocess.STDOUT)
    try:
      deadline = time.time() + 90
      while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
      running = proc.poll() is None
      proc.send_signal(sig)
      proc.wait(timeout=60)
    finally:
      if proc.poll() is None:
        proc.kill()
  return proc, running


def test_run_killed_with_sigkill_resumes_from_its_last_checkpoint(tmp_path, data_cache, compile_cache):
  workdir = str(tmp_path / "killed")
  num_steps, every = 150, 10
  args = _main_args(
    workdir,
    data_cache,
    f"--config.train.num_steps={num_steps}",
    f"--config.train.checkpoint_every={every}",
    f"--config.train.eval_every={num_steps}",
    f"--config.train.log_every={every}",
    "--config.train.keep_checkpoints=2",
  )
  log_path = tmp_path / "first.out"
  proc, running = _run_and_signal(
    args, compile_cache, log_path, lambda: bool(checkpoint_steps(workdir)), signal.SIGKILL
  )
  assert running, f"the run ended before it could be killed:\n{log_path.read_text()}"
  assert proc.returncode == -signal.SIGKILL
  saved = checkpoint_steps(workdir)
  assert saved and saved[-1] < num_steps, saved

  proc = subprocess.run(
    args, cwd=_REPO, env=_env(compile_cache), capture_output=True, text=True, timeout=180, check=False
  )
  assert proc.returncode == 0, proc.stdout + proc.stderr
  with open(os.path.join(workdir, "train.log"), encoding="utf-8") as f:
    log = f.read()
  resumed = re.findall(r"resumed from \S+ at step (\d+)", log)
  assert resumed == [str(saved[-1])], log
  assert f"step {num_steps}/{num_steps} " in log
  assert checkpoint_steps(workdir)[-1] == num_steps


@pytest.mark.parametrize("sig, label", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C")])
def test_sigterm_saves_at_the_next_step_and_stops_cleanly(tmp_path, data_cache, compile_cache, sig, label):
  """A preemption (SIGTERM) or a first Ctrl-C writes a checkpoint at the step it arrives, off the checkpoint_every
  grid."""
  workdir = str(tmp_path / "terminated")
  num_steps, every = 400, 100
  args = _main_args(
    workdir,
    data_cache,
    f"--config.train.num_steps={num_steps}",
    f"--config.train.checkpoint_every={every}",
    f"--config.train.eval_every={num_steps}",
    "--config.train.log_every=1",
  )
  log_path = tmp_path / "first.out"
  proc, running = _run_and_signal(args, compile_cache, log_path, lambda: "step 3/" in log_path.read_text(), sig)
  output = log_path.read_text()
  assert running, f"the run ended before it could be stopped:\n{output}"
  assert proc.returncode == 0, output
  assert "Traceback" not in output, output
  stopped = re.findall(rf"stopped by {label} at step (\d+)", output)
  assert len(stopped) == 1, output
  assert checkpoint_steps(workdir) == [int(stopped[0])], output
  assert int(stopped[0]) % every and int(stopped[0]) < num_steps


def test_first_ctrl_c_asks_for_a_save_and_a_second_one_stops_at_once():
  said = []
  before = signal.getsignal(signal.SIGINT)
  preemption = train.Preemption(say=said.append)
  try:
    assert preemption.requested is None
    os.kill(os.getpid(), signal.SIGINT)
    assert preemption.requested == "Ctrl-C" and len(said) == 1 and "Ctrl-C again" in said[0]
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  finally:
    preemption.close()
  assert signal.getsignal(signal.SIGINT) is before  # the previous handler is back


def test_eta_follows_the_curriculum_stages(tmp_path):
  cfg = defaults.base_config("synthesis")
  cfg = defaults.apply_variant(cfg, "tiny")
  cfg.data.curriculum = ((6, 80),)
  dataset = dataset_lib.load_dataset(cfg.data, progress=False)
  batches = train.CurriculumBatches(dataset.train, dataset.alphabet, cfg.data, dataset.stats)
  batches.next(0)
  short, full = batches._mean_length(0), batches._mean_length(1)
  assert short < full  # the short-line stage costs less per step
  assert batches.remaining_length(0, 10) == pytest.approx(6 * short + 4 * full)
  assert batches.remaining_length(8, 10) == pytest.approx(2 * full)
  # Smoothed seconds per padded point times what is left: 100 points in 10 s, 50 points left -> 5 s.
  clock = iter([0.0, 100.0, 110.0])
  reporter = train.Reporter(str(tmp_path), 10, clock=lambda: next(clock))
  reporter.progress(1, {"loss": 1.0}, 999.0, 50.0)  # the first interval (compilation) only starts the clock
  reporter.progress(2, {"loss": 1.0}, 100.0, 50.0)
  with open(tmp_path / "train.log", encoding="utf-8") as f:
    lines = f.read().splitlines()
  assert lines[0].endswith("eta=--:--:--") and lines[1].endswith("eta=00:00:05"), lines
  reporter.close()
