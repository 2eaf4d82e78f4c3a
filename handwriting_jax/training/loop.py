"""Training loop: `train_and_evaluate(config, workdir)` trains, evaluates, logs, checkpoints and resumes."""

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from flax import nnx

from handwriting_jax.config import validation
from handwriting_jax.data import augment as augment_lib
from handwriting_jax.data import batches as batches_lib
from handwriting_jax.data import dataset as dataset_lib
from handwriting_jax.data import end_of_text
from handwriting_jax.data import pieces as pieces_lib
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.data import synthetic as synthetic_lib
from handwriting_jax.errors import UserError
from handwriting_jax.model import networks, precision
from handwriting_jax.training import checkpoint as ckpt_lib
from handwriting_jax.training import optim, parallel, restore, weight_noise, workdir_lock
from handwriting_jax.training import samples as training_samples
from handwriting_jax.training import step as step_lib


class NonFiniteLossError(UserError, FloatingPointError):
  """Training produced a NaN or infinite loss or gradient; no checkpoint of that state was written."""


class CurriculumBatches:
  """Training batches with a curriculum: first word pieces for `data.pieces_until` steps (data/pieces.py, when > 0),
  then line-length stages `data.curriculum` = ((until_step, max_points), ...), then full lines up to `max_points`.
  With `data.synthetic_until` > 0 the synthetic lines (`data.synthetic_lines`) leave the lines at that step.

  Each stage has its own seeded BatchIterator; the state (stage, iterator state) goes into checkpoints so a resumed
  run sees exactly the same batches.
  """

  def __init__(self, split, alphabet, data_cfg: ml_collections.ConfigDict, stats=None):
    self.split, self.alphabet, self.data_cfg, self.stats = split, alphabet, data_cfg, stats
    pieces_until = int(data_cfg.get("pieces_until", 0))
    stages = (
      ([(pieces_until, int(data_cfg.max_points), True)] if pieces_until > 0 else [])
      + [(int(u), int(m), False) for u, m in data_cfg.curriculum]
      + [(None, int(data_cfg.max_points), False)]
    )
    # (until_step, max_points, word pieces, synthetic lines kept)
    self.stages = _split_stages(stages, int(data_cfg.get("synthetic_until", 0)))
    self.stage, self.iterator = -1, None
    self.pieces_summary = None
    self.oversample_summary = ""
    self._mean_lengths: dict[int, float] = {}

  def _stage_for(self, step: int) -> int:
    return next(i for i, (until, *_) in enumerate(self.stages) if until is None or step < until)

  def _start(self, stage: int) -> None:
    self.stage = stage
    use_pieces = self.stages[stage][2]
    strokes, texts = self._lines(stage)
    if use_pieces:
      num_lines = len(strokes)
      strokes, texts, cut = pieces_lib.split_into_pieces(
        strokes, texts, self.stats, int(self.data_cfg.piece_max_words), int(self.data_cfg.shuffle_seed)
      )
      self.pieces_summary = f"word pieces: {len(strokes)} pieces from {cut} of {num_lines} lines"
    self.iterator, repeated = self._iterator(stage, strokes, texts)
    self.oversample_summary = (
      f", {repeated} holding rare characters used {self.data_cfg.oversample_factor}x" if repeated else ""
    )

  def _lines(self, stage: int) -> tuple[list, list]:
    """(strokes, texts) of the training lines a stage draws from: all of them, or the real ones once the synthetic
    lines have left (`data.synthetic_until`)."""
    strokes, texts = self.split.strokes, self.split.texts
    if self.stages[stage][3]:
      return strokes, texts
    real = [i for i, line_id in enumerate(self.split.ids) if not synthetic_lib.is_synthetic(line_id)]
    return [strokes[i] for i in real], [texts[i] for i in real]

  def _iterator(self, stage: int, strokes, texts) -> tuple[batches_lib.BatchIterator, int]:
    """The batches of a stage over these lines, those holding rare characters repeated (`batches.oversampled`), and
    how many were."""
    strokes, texts, repeated = batches_lib.oversampled(
      strokes, texts, self.data_cfg.get("oversample_chars", ""), int(self.data_cfg.get("oversample_factor", 1))
    )
    strokes, texts = end_of_text.appended(strokes, texts, self.alphabet, self.stats)
    iterator = batches_lib.BatchIterator(
      strokes,
      texts,
      self.alphabet,
      batch_size=self.data_cfg.batch_size,
      num_buckets=self.data_cfg.num_buckets,
      seed=self.data_cfg.shuffle_seed + 1009 * stage,
      max_points=self.stages[stage][1],
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      augment=self._augmentation(),
    )
    return iterator, repeated

  def _augmentation(self) -> augment_lib.Augmentation | None:
    """The random slant and scale of training lines (`data.augment_slant` / `data.augment_scale`), or None."""
    slant, scale = float(self.data_cfg.get("augment_slant", 0.0)), float(self.data_cfg.get("augment_scale", 0.0))
    if slant == 0 and scale == 0:
      return None
    stats = self.stats or strokes_lib.NormStats(mean=np.zeros(2, np.float32), std=np.ones(2, np.float32))
    return augment_lib.Augmentation(slant=slant, scale=scale, stats=stats)

  def _mean_length(self, stage: int) -> float:
    """Mean padded length T of a stage's batches over an epoch (what a step of that stage costs, roughly)."""
    if stage not in self._mean_lengths:
      it = self.iterator if stage == self.stage else self._iterator(stage, *self._lines(stage))[0]
      self._mean_lengths[stage] = it.mean_padded_length
    return self._mean_lengths[stage]

  def remaining_length(self, step: int, num_steps: int) -> float:
    """Sum of the expected padded lengths of steps `step..num_steps-1` (for the ETA), stage by stage."""
    total, lo = 0.0, 0
    for i, (until, _, use_pieces, _) in enumerate(self.stages):
      hi = num_steps if until is None else min(until, num_steps)
      n = max(0, hi - max(lo, step))
      if n and not (use_pieces and i != self.stage):  # a pieces stage not yet started would need its split
        total += n * self._mean_length(i)
      lo = hi
    return total

  def describe(self) -> str:
    """One line about the current stage, for the log."""
    until, max_points, use_pieces, _ = self.stages[self.stage]
    what = self.pieces_summary if use_pieces else f"lines up to {max_points} points"
    lines = self.iterator.num_lines
    return (
      f"curriculum stage {self.stage} ({'until step ' + str(until) if until else 'to the end'}): {what}, "
      f"{lines} used{self.oversample_summary}, {self.iterator.steps_per_epoch} steps per epoch"
    )

  def next(self, step: int) -> dict[str, np.ndarray]:
    """This process's slice of the global batch for training step `step`."""
    stage = self._stage_for(step)
    if stage != self.stage:
      self._start(stage)
    return next(self.iterator)

  def state(self) -> dict:
    """Checkpointable position."""
    return {"stage": self.stage, "iterator": self.iterator.state() if self.iterator else None}

  def restore(self, state: dict) -> None:
    """Continue from a `state()`."""
    if state["stage"] >= 0:
      self._start(state["stage"])
      self.iterator.restore({k: np.asarray(v) for k, v in state["iterator"].items()})


def _split_stages(stages: list[tuple], synthetic_until: int) -> list[tuple]:
  """The (until_step, max_points, pieces) stages with a fourth field, whether the synthetic lines are kept: all of
  them when `synthetic_until` is 0, else those before it (the stage it falls in cut in two there)."""
  if synthetic_until <= 0:
    return [(*stage, True) for stage in stages]
  out, lo = [], 0
  for until, max_points, pieces in stages:
    if lo < synthetic_until and (until is None or until > synthetic_until):
      out.append((synthetic_until, max_points, pieces, True))
      out.append((until, max_points, pieces, False))
    else:
      out.append((until, max_points, pieces, until is not None and until <= synthetic_until))
    lo = until or lo
  return out


def validation_batches(dataset, data_cfg: ml_collections.ConfigDict, num_batches: int) -> list[dict]:
  """A fixed list of validation batches (one full pass when `num_batches == 0`)."""
  strokes, texts = end_of_text.appended(dataset.valid.strokes, dataset.valid.texts, dataset.alphabet, dataset.stats)
  it = batches_lib.BatchIterator(
    strokes,
    texts,
    dataset.alphabet,
    batch_size=data_cfg.batch_size,
    num_buckets=data_cfg.num_buckets,
    seed=12345,
    max_points=None,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  return [next(it) for _ in range(num_batches or it.steps_per_epoch)]


def evaluate(par: parallel.DataParallel, state, batches: list[dict]) -> dict[str, float]:
  """Validation loss in nats per sequence and per step, averaged exactly over all lines of `batches`."""
  sums = [par.eval_sums(state, b) for b in batches]
  total = {k: float(sum(jax.device_get(s[k]) for s in sums)) for k in sums[0]}
  return {"valid_loss": total["nll"] / total["lines"], "valid_loss_per_step": total["nll"] / total["steps"]}


class Reporter:
  """Console line (step, loss, steps/s, ETA), WORKDIR/train.log and TensorBoard scalars, process 0 only."""

  def __init__(self, workdir: str, num_steps: int, clock=time.monotonic):
    self.active = jax.process_index() == 0
    self.num_steps = num_steps
    self.log_path = os.path.join(workdir, "train.log")
    self.writer = None
    if self.active:
      from tensorboardX import SummaryWriter

      self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
    self._clock = clock
    self._t0, self._s0 = clock(), None
    self._per_point = None  # smoothed seconds per padded time step of a batch

  def scalars(self, step: int, values: dict[str, float]) -> None:
    """Write scalars to TensorBoard."""
    if self.writer:
      for k, v in values.items():
        self.writer.add_scalar(k, v, step)
      self.writer.flush()

  def line(self, text: str) -> None:
    """Log a line to the console and to train.log."""
    if self.active:
      print(text, flush=True)
      with open(self.log_path, "a", encoding="utf-8") as f:
        f.write(text + "\n")

  def progress(self, step: int, values: dict[str, float], points: float, remaining_points: float) -> None:
    """Console progress line with throughput since the last call and an ETA.

    The ETA is the remaining steps' expected padded lengths (`remaining_points`, per curriculum stage) times a
    smoothed time per padded point (`points` were run since the last call), so a stage of short lines does not
    promise an early finish; the first interval (compilation) only starts the clock.
    """
    now = self._clock()
    if self._s0 is None:
      self._t0, self._s0 = now, step
      rate = float("nan")
    else:
      dt = max(now - self._t0, 1e-9)
      rate = (step - self._s0) / dt
      if points > 0:
        per_point = dt / points
        self._per_point = per_point if self._per_point is None else 0.7 * self._per_point + 0.3 * per_point
      self._t0, self._s0 = now, step
    eta = remaining_points * self._per_point if self._per_point is not None else float("nan")
    eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "--:--:--"
    parts = " ".join(f"{k}={v:.4g}" for k, v in values.items())
    self.line(f"step {step}/{self.num_steps} {parts} steps/s={rate:.3g} eta={eta_text}")
    self.scalars(step, {**values, "steps_per_second": rate} if math.isfinite(rate) else values)

  def close(self) -> None:
    """Flush TensorBoard."""
    if self.writer:
      self.writer.close()


class Preemption:
  """SIGTERM (preemption, `scancel`, a SLURM requeue) or a first Ctrl-C (SIGINT) asks for a checkpoint at the next
  step and a clean stop; a second Ctrl-C stops at once (KeyboardInterrupt, nothing more saved).

  One process: a signal handler sets a flag. Several processes: JAX's preemption sync point (through Orbax), so that
  every process saves at the same step.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, say: Callable[[str], None] = print):
    self.requested = None  # the name of the signal that asked to stop
    self._say = say
    self._previous = {}
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

  def _handle(self, signum, frame) -> None:
    del frame
    if signum == signal.SIGINT and self.requested == "Ctrl-C":
      raise KeyboardInterrupt
    self.requested = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    if signum == signal.SIGINT:
      self._say("Ctrl-C: saving a checkpoint after this step, then stopping (Ctrl-C again stops at once)")

  def reached(self, ckpt: ckpt_lib.Checkpointer, step: int) -> bool:
    """True when this step should be the last one (all processes agree)."""
    if jax.process_count() > 1:
      return ckpt.manager.reached_preemption(step)
    return self.requested is not None

  def close(self) -> None:
    """Restore the previous handlers."""
    for s, previous in self._previous.items():
      signal.signal(s, previous)
    self._previous = {}


def _check_finite(metrics: dict, step: int) -> None:
  if not bool(metrics["finite"]):
    raise NonFiniteLossError(
      f"non-finite loss or gradient at step {step} (loss={float(metrics['loss'])}, "
      f"grad_norm={float(metrics['grad_norm'])}); stopping without saving this state. Try a lower "
      "config.optim.learning_rate or config.optim.clip_mode='graves'/'global_norm'."
    )


class InitFromError(UserError, ValueError):
  """config.train.init_from names no readable checkpoint, or one of another network or data preprocessing."""


def initial_params(config: ml_collections.ConfigDict, dataset: dataset_lib.Dataset, path: str) -> nnx.State:
  """The parameters of the checkpoint at `path` (a training workdir or a params-only export), to start this run
  from (`config.train.init_from`, e.g. weight noise from a noiseless network, as the paper does); the network, the
  alphabet and the preprocessing must match this run's, except that a writer without the end symbol may start a run
  with it (`data.end_of_text`: the symbol's weights start at zero)."""
  try:
    writer = restore.restore_network(path)
  except UserError as e:
    raise InitFromError(f"config.train.init_from={path}: {e}") from None
  saved = json.loads(writer.config.to_json_best_effort())
  try:
    ckpt_lib.check_compatible(
      saved,
      config,
      writer.workdir,
      ckpt_lib.NETWORK_FIELDS,
      advice="Fine-tuning keeps the network: give this run the config.model of the run it starts from.",
    )
  except ckpt_lib.IncompatibleWorkdirError as e:
    raise InitFromError(f"config.train.init_from={path}: {e}") from None
  if not end_of_text.has_end(writer.alphabet) and end_of_text.with_end(writer.alphabet) == dataset.alphabet:
    networks.add_characters(writer.model, 1)  # the end symbol (data.end_of_text) learnt on top of a trained writer
  elif writer.alphabet.chars != dataset.alphabet.chars:
    raise InitFromError(
      f"config.train.init_from={path}: its alphabet {writer.alphabet.chars!r} is not this run's "
      f"{dataset.alphabet.chars!r}"
    )
  if not (np.allclose(writer.stats.mean, dataset.stats.mean) and np.allclose(writer.stats.std, dataset.stats.std)):
    raise InitFromError(
      f"config.train.init_from={path}: it was trained with other normalisation statistics "
      f"(mean {writer.stats.mean}, std {writer.stats.std}; this run's data: mean "
      f"{dataset.stats.mean}, std {dataset.stats.std})"
    )
  return nnx.state(writer.model, nnx.Param)


class WorkdirError(UserError, OSError):
  """The workdir cannot be used: a file where a folder should be, or a folder this run cannot write to."""


def _open_workdir(workdir: str) -> workdir_lock.WorkdirLock | None:
  """Create the workdir and take its lock (process 0 only; a second run on it is refused, naming the first);
  one-line errors for a path that is a file or a folder that cannot be written."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir} is a file, not a folder")
  lock = workdir_lock.WorkdirLock(workdir) if jax.process_index() == 0 else None
  try:
    os.makedirs(workdir, exist_ok=True)
    if lock is not None:
      lock.acquire()
  except OSError as e:
    raise WorkdirError(f"cannot write to the workdir {os.path.abspath(workdir)}: {e.strerror or e}") from None
  return lock


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Train `config` in `workdir` (resuming from its newest checkpoint) and return the final metrics; the workdir is
  locked for the run (`workdir_lock`)."""
  validation.validate(config, jax.device_count(), jax.process_count())
  lock = _open_workdir(workdir)
  try:
    return _train(config, workdir)
  finally:
    if lock is not None:
      lock.release()


def _resume_batches(train_batches: "CurriculumBatches", data_iter: dict, path: str) -> None:
  """Continue the data iterator where the checkpoint left it; IncompatibleWorkdirError when this run's batches
  cannot (another `data.batch_size` or bucketing)."""
  try:
    train_batches.restore(data_iter)
  except (ValueError, KeyError) as e:
    raise ckpt_lib.IncompatibleWorkdirError(
      f"the checkpoints in {path} cannot continue with this run's batches ({e}); give this run the "
      "config.data of the run that wrote them, or use a new --workdir"
    ) from None


def _train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """`train_and_evaluate` inside the locked workdir."""
  ckpt = ckpt_lib.Checkpointer(workdir, config.train.keep_checkpoints)
  reporter, preemption = None, Preemption()
  try:
    saved = None
    if ckpt.latest_step() is not None:
      saved = ckpt.first_intact(ckpt.restore_metadata)[0]
      ckpt_lib.check_compatible(saved["config"], config, ckpt.path)

    dataset = dataset_lib.load_dataset(config.data)
    if saved is not None and saved["alphabet"] != dataset.alphabet.chars:
      raise ckpt_lib.IncompatibleWorkdirError(
        f"the checkpoints in {ckpt.path} use the alphabet {saved['alphabet']!r}, but this run's data gives "
        f"{dataset.alphabet.chars!r}; fix config.data.alphabet or use a new --workdir"
      )
    model = networks.create_model(config, dataset.alphabet.size)
    if saved is None and config.train.init_from:
      nnx.update(model, initial_params(config, dataset, config.train.init_from))
    tx = optim.make_optimizer(config.optim, config.train.num_steps)
    noise = step_lib.noise_settings(config, len(dataset.train))
    graphdef, state = step_lib.create_train_state(model, tx, noise, ema=config.train.ema_decay > 0)
    train_batches = CurriculumBatches(dataset.train, dataset.alphabet, config.data, dataset.stats)
    reporter = Reporter(workdir, config.train.num_steps)
    reporter.line(dataset.summary["line"])
    matmul_dtype, why = precision.resolve_here(config.model.compute_dtype)
    reporter.line(
      f"{config.model.mode} network: {networks.count_params(model):,} parameters; "
      f"{jax.device_count()} device(s) ({jax.devices()[0].platform}), {jax.process_count()} process(es); "
      f"matmuls in {matmul_dtype} ({why})"
    )
    if saved is not None:
      (state, saved), step_ok, failures = ckpt.first_intact(lambda s: ckpt.restore(state, s))
      for bad, e in failures:  # newer than an intact step: broken files, not a mismatch
        reporter.line(
          f"warning: checkpoint step {bad} cannot be read ({ckpt_lib.short_reason(e)}); moved it to "
          f"{ckpt.set_aside(bad)} and resuming from step {step_ok}"
        )
      _resume_batches(train_batches, saved["data_iter"], ckpt.path)
      reporter.line(f"resumed from {ckpt.path} at step {int(state.step)}")
    else:
      with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
        f.write(config.to_json_best_effort(indent=2))

    metadata = {
      "config": json.loads(config.to_json_best_effort()),
      "alphabet": dataset.alphabet.chars,
      "norm": dataset.stats.to_arrays(),
    }
    par = parallel.DataParallel(config, graphdef, tx, noise)
    reporter.line(par.describe())
    if noise.mode != "none":
      reporter.line(weight_noise.describe(config.optim, len(dataset.train)))
    if saved is None and config.train.init_from:
      reporter.line(f"initialised from {config.train.init_from}")
    logged = ("loss", "loss_per_step", "grad_norm") + (("complexity",) if noise.mode == "adaptive" else ())
    state = par.put_state(state)
    valid = validation_batches(dataset, config.data, config.train.eval_batches)
    cfg_t = config.train
    start = int(par.global_state(state).step)
    pending, since_log, final = None, [], {}  # since_log: host metrics of the steps since the last progress line
    points = 0.0  # padded time steps run since the last progress line (for the ETA)

    def save(step_now: int, metrics) -> None:
      _check_finite(jax.device_get(metrics), step_now)
      ckpt.save(step_now, par.global_state(state), {**metadata, "data_iter": train_batches.state()})

    for step_now in range(start + 1, cfg_t.num_steps + 1):
      stage = train_batches.stage
      batch = train_batches.next(step_now - 1)
      if train_batches.stage != stage:
        reporter.line(train_batches.describe())
      state, metrics = par.train_step(state, batch)
      points += batch["inputs"].shape[1]
      if pending is not None:  # read step t-1 while step t runs
        host = jax.device_get(pending[1])
        _check_finite(host, pending[0])
        since_log.append(host)
      pending = (step_now, metrics)
      if step_now % cfg_t.log_every == 0 and since_log:
        values = {k: float(np.mean([w[k] for w in since_log])) for k in logged}
        since_log = []
        reporter.progress(step_now, values, points, train_batches.remaining_length(step_now, cfg_t.num_steps))
        points = 0.0
      if step_now % cfg_t.eval_every == 0 or step_now == cfg_t.num_steps:
        final = evaluate(par, state, valid)
        reporter.line(
          f"step {step_now} validation{' (moving average)' if cfg_t.ema_decay else ''}: "
          f"{final['valid_loss']:.2f} nats/sequence, {final['valid_loss_per_step']:.4f} nats/step"
        )
        reporter.scalars(step_now, final)
      if step_now % cfg_t.checkpoint_every == 0 or step_now == cfg_t.num_steps:
        save(step_now, metrics)
      if cfg_t.sample_every and (step_now % cfg_t.sample_every == 0 or step_now == cfg_t.num_steps):
        _check_finite(jax.device_get(metrics), step_now)
        written = training_samples.write_training_samples(
          graphdef, step_lib.judged_params(par.global_state(state)), metadata, config, workdir, step_now
        )
        if written:
          reporter.line(f"step {step_now} samples: {', '.join(written)}")
      if preemption.reached(ckpt, step_now):
        if step_now % cfg_t.checkpoint_every and step_now != cfg_t.num_steps:  # not saved above
          save(step_now, metrics)
        reporter.line(
          f"stopped by {preemption.requested or 'SIGTERM'} at step {step_now}: checkpoint saved; the same "
          "command resumes"
        )
        break
    if pending is not None:
      _check_finite(jax.device_get(pending[1]), pending[0])
  finally:
    preemption.close()
    ckpt.close()
    if reporter is not None:
      reporter.close()
  return final
