"""Learn a hand from a few lines: fine-tune a trained synthesis writer on one to ten lines of one person's writing.

`adapt(writer, lines, ...)` minimises the network's own training NLL (`step.batch_loss`) on the lines, normalised
with the writer's statistics and padded into one batch (`batches.pad_batch`), with one jitted Adam step, starting
from the parameters `load_writer` restores (the moving average when the run kept one). What moves is a choice
(`WHAT`):

  all     every parameter, with an L2 pull toward the original weights (`pull`) so it does not forget how to write;
  output  only the mixture output layer (w_y, b_y): the shapes and spread of the pen's next offset;
  lora    a low-rank delta A·B (rank `LORA_RANK`, B starting at zero) on every weight matrix, biases fixed.

`save_adapted` writes the result as a params-only checkpoint (the layout of `writer.export_model`, with the source's
metadata and an `adapted_from` entry) plus the lines as the new writer's styles (styles/hand_0.npz, ...), so that
`write --workdir=DIR --style_name=hand_0` and `serve --workdir=DIR` use it unchanged.
"""

import copy
import dataclasses
import json
import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from handwriting_jax.data import batches, end_of_text
from handwriting_jax.errors import UserError
from handwriting_jax.training import checkpoint as ckpt_lib
from handwriting_jax.training import step as step_lib
from handwriting_jax.writing import writer as writer_lib

WHAT = ("all", "output", "lora")
# The defaults were measured with the shipped `iam` writer on IAM validation forms (the adapted lines and held-out
# lines of one form, against 40 validation lines of other forms): `all` at 1e-5 for 80 steps lowers the held-out
# lines' NLL by 7-19 nats per line (3-5 lines) while the other forms' NLL rises by 2-4, and takes 15-25 s on two CPU
# cores, compile included. `output` and `lora` learn less of the hand for the same rise; larger rates or many more
# steps fit the given lines and forget the other hands faster than they learn the hand's held-out lines.
DEFAULT_WHAT = "all"
DEFAULT_STEPS = 80
LEARNING_RATES = {"all": 1e-5, "output": 3e-5, "lora": 1e-4}  # Adam, per choice
DEFAULT_PULL = 100.0  # `all`: weight of Σ (θ - θ₀)² next to the lines' mean NLL (nats per line)
LORA_RANK = 4
MAX_LINES = 10
OUTPUT_PARAMS = ("w_y", "b_y")  # the mixture output layer (eq. 17)
STYLE_PREFIX = "hand_"  # the lines are saved as styles/hand_0.npz, hand_1.npz, ...

Line = tuple[np.ndarray, str]  # (raw de-normalised offsets [T, 3] at the network's point rate, text)
Progress = Callable[[int, int, float], None]  # (steps done, steps in all, NLL per line before that step)


class AdaptError(UserError, ValueError):
  """A request `adapt` cannot serve: no lines or too many, a bad line, a prediction network, a used output folder."""


@dataclasses.dataclass(frozen=True)
class Result:
  """What `adapt` did: the per-step NLL (nats per line, before each step's update) and its settings."""

  losses: list[float]
  what: str
  steps: int
  learning_rate: float
  pull: float
  seed: int


def check_lines(writer: writer_lib.Writer, lines: Sequence[Line], max_lines: int | None = MAX_LINES) -> None:
  """AdaptError (or the alphabet's UnknownCharactersError) before any work: the writer must write text, and there
  must be 1..`max_lines` finite lines [T >= 2, 3] with non-empty texts it can write."""
  if not writer.conditional:
    raise AdaptError(
      f"the checkpoint in {writer.workdir} is a prediction network: it writes no text, so it cannot "
      "learn a hand; give a synthesis writer"
    )
  if not lines:
    raise AdaptError("no lines to learn from: give at least one style file")
  if max_lines is not None and len(lines) > max_lines:
    raise AdaptError(f"{len(lines)} lines given; adaptation takes 1 to {max_lines} lines of one hand")
  for i, (strokes, text) in enumerate(lines):
    strokes = np.asarray(strokes)
    if strokes.ndim != 2 or strokes.shape[1] != 3 or len(strokes) < 2:
      raise AdaptError(f"line {i} ({text!r}): expected offsets [T >= 2, 3], got shape {strokes.shape}")
    if not np.all(np.isfinite(strokes)):
      raise AdaptError(f"line {i} ({text!r}): its offsets hold non-finite values")
    if not text.strip():
      raise AdaptError(f"line {i}: its text is empty")
    if end_of_text.END_CHAR in text:
      raise AdaptError(f"line {i} ({text!r}): its text holds the end-of-text control character")
  writer.alphabet.check_known([text for _, text in lines])


def make_batch(writer: writer_lib.Writer, lines: Sequence[Line]) -> dict[str, np.ndarray]:
  """The lines as one teacher-forcing batch (`pad_batch`), normalised with the writer's statistics, T and U rounded
  up as the training batches are."""
  strokes = [writer.stats.normalise(np.asarray(s, np.float32)) for s, _ in lines]
  texts = [text for _, text in lines]
  strokes, texts = end_of_text.appended(strokes, texts, writer.alphabet, writer.stats)
  ids = [writer.alphabet.encode(text) for text in texts]
  return batches.fitted_batch(strokes, ids, len(lines))


def _leaf_names(params: nnx.State) -> list[str]:
  """The name of every parameter leaf, in `jax.tree.leaves` order, e.g. "layers/0/w_x"."""
  names = []
  for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = [getattr(k, "key", getattr(k, "idx", getattr(k, "name", None))) for k in path]
    names.append("/".join(str(k) for k in keys if k not in (None, "value")))
  return names


def _is_output(name: str) -> bool:
  """True for the mixture output layer's parameters."""
  return name.split("/")[-1] in OUTPUT_PARAMS


def _split(what: str, leaves: list[jax.Array], names: list[str], seed: int):
  """(trained tree, compose) for `what`: `compose(trained, leaves0)` gives the full list of parameter leaves."""
  if what == "all":
    return list(leaves), lambda trained, leaves0: trained
  if what == "output":
    idx = [i for i, n in enumerate(names) if _is_output(n)]

    def compose_output(trained, leaves0):
      out = list(leaves0)
      for i, x in zip(idx, trained):
        out[i] = x
      return out

    return [leaves[i] for i in idx], compose_output
  if what == "lora":
    idx = [i for i, x in enumerate(leaves) if x.ndim == 2 and min(x.shape) > LORA_RANK]
    keys = jax.random.split(jax.random.key(seed), max(len(idx), 1))
    trained = [
      (
        jax.random.normal(k, (leaves[i].shape[0], LORA_RANK), jnp.float32) / np.sqrt(leaves[i].shape[0]),
        jnp.zeros((LORA_RANK, leaves[i].shape[1]), jnp.float32),
      )
      for k, i in zip(keys, idx)
    ]

    def compose_lora(trained, leaves0):
      out = list(leaves0)
      for i, (a, b) in zip(idx, trained):
        out[i] = leaves0[i] + a @ b
      return out

    return trained, compose_lora
  raise AdaptError(f"--adapt={what}: choose one of {', '.join(WHAT)}")


def adapt(
  writer: writer_lib.Writer,
  lines: Sequence[Line],
  *,
  steps: int = DEFAULT_STEPS,
  learning_rate: float | None = None,
  what: str = DEFAULT_WHAT,
  pull: float = DEFAULT_PULL,
  seed: int = 0,
  progress: Progress | None = None,
) -> tuple[writer_lib.Writer, Result]:
  """Fine-tune `writer` on `lines` of one hand (the network's training NLL, one batch, `steps` Adam steps of what
  `what` names); returns a new Writer (the source's is left untouched) and the per-step losses."""
  check_lines(writer, lines)
  if what not in WHAT:
    raise AdaptError(f"--adapt={what}: choose one of {', '.join(WHAT)}")
  if steps < 1:
    raise AdaptError(f"--steps={steps}: take at least 1 step")
  lr = LEARNING_RATES[what] if learning_rate is None else float(learning_rate)
  if not lr > 0 or not np.isfinite(lr):
    raise AdaptError(f"--learning_rate={learning_rate}: give a positive learning rate")
  if pull < 0 or not np.isfinite(pull):
    raise AdaptError(f"pull={pull}: give a finite pull >= 0")
  batch = {k: jnp.asarray(v) for k, v in make_batch(writer, lines).items()}
  graphdef, params0 = nnx.split(writer.model, nnx.Param)
  leaves0, treedef = jax.tree.flatten(params0)
  leaves0 = [jnp.asarray(np.asarray(x)) for x in leaves0]  # off the restore's mesh: one jit signature, one compile
  trained, compose = _split(what, leaves0, _leaf_names(params0), seed)
  tx = optax.chain(optax.clip_by_global_norm(float(writer.config.optim.max_grad_norm)), optax.adam(lr))
  pulled = what == "all" and pull > 0

  def objective(tree, leaves0, batch):
    leaves = compose(tree, leaves0)
    nll, _ = step_lib.batch_loss(graphdef, jax.tree.unflatten(treedef, leaves), batch)
    penalty = sum(jnp.sum(jnp.square(x - x0)) for x, x0 in zip(leaves, leaves0)) if pulled else 0.0
    return nll + pull * penalty, nll

  @jax.jit
  def train_step(tree, opt_state, leaves0, batch):
    (_, nll), grads = jax.value_and_grad(objective, has_aux=True)(tree, leaves0, batch)
    updates, opt_state = tx.update(grads, opt_state, tree)
    return optax.apply_updates(tree, updates), opt_state, nll

  opt_state = tx.init(trained)
  losses = []
  for i in range(steps):
    trained, opt_state, nll = train_step(trained, opt_state, leaves0, batch)
    losses.append(float(nll))
    if progress is not None:
      progress(i + 1, steps, losses[-1])
  params = jax.tree.unflatten(treedef, [np.asarray(x) for x in compose(trained, leaves0)])
  model = nnx.merge(graphdef, params)
  adapted = dataclasses.replace(writer, model=model, config=copy.deepcopy(writer.config))
  return adapted, Result(losses, what, steps, lr, pull if pulled else 0.0, seed)


def mean_nll(writer: writer_lib.Writer, lines: Sequence[Line]) -> float:
  """Mean NLL of `lines` under `writer` in nats per line (the training loss, teacher-forced): how well the network
  predicts that hand; to compare a writer before and after `adapt`."""
  check_lines(writer, lines, max_lines=None)
  graphdef, params = nnx.split(writer.model, nnx.Param)
  batch = {k: jnp.asarray(v) for k, v in make_batch(writer, lines).items()}
  sums = jax.jit(step_lib.eval_sums, static_argnums=0)(graphdef, params, batch)
  return float(sums["nll"] / sums["lines"])


def check_out_dir(out_dir: str) -> None:
  """AdaptError before any work when `out_dir` already holds a checkpoint or cannot be a folder."""
  full = os.path.abspath(out_dir)
  if os.path.exists(full) and not os.path.isdir(full):
    raise AdaptError(f"--out={out_dir} is a file; give a new or empty folder")
  ckpts = os.path.join(full, "checkpoints")
  if os.path.isdir(ckpts) and os.listdir(ckpts):
    raise AdaptError(f"--out={out_dir} already holds a checkpoint; give a new or empty folder")
  blocking = writer_lib.file_in_the_way(full)
  if blocking:
    raise AdaptError(f"--out={out_dir}: {blocking} is a file, so nothing can be written under it")


def source_metadata(writer: writer_lib.Writer) -> dict:
  """The metadata of the checkpoint `writer` was loaded from (config, alphabet, normalisation, ...)."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(min(verbosity, logging.ERROR))  # Orbax warns that a read-only manager will not save
  try:
    ckpt = ckpt_lib.Checkpointer(writer.workdir, read_only=True)
  finally:
    logging.set_verbosity(verbosity)
  try:
    return ckpt.restore_metadata(writer.step)
  finally:
    ckpt.close()


def save_adapted(
  source: writer_lib.Writer,
  adapted: writer_lib.Writer,
  lines: Sequence[Line],
  result: Result,
  out_dir: str,
  seconds: float | None = None,
) -> str:
  """Write `adapted` into `out_dir` as a params-only checkpoint with `source`'s metadata and an `adapted_from`
  entry, and the lines as its styles (styles/hand_0.npz, ...); returns the checkpoint folder."""
  check_out_dir(out_dir)
  metadata = {k: v for k, v in source_metadata(source).items() if k != "data_iter"}
  metadata["params_only"] = True
  metadata.setdefault("exported_from", {"workdir": source.workdir, "step": source.step, "ema": source.ema})
  metadata["adapted_from"] = {
    "workdir": source.workdir,
    "step": source.step,
    "texts": [text for _, text in lines],
    "points": [len(s) for s, _ in lines],
    "adapted": result.what,
    "steps": result.steps,
    "learning_rate": result.learning_rate,
    "pull": result.pull,
    "lora_rank": LORA_RANK if result.what == "lora" else 0,
    "seed": result.seed,
    "nll_first": result.losses[0],
    "nll_last": result.losses[-1],
    "seconds": None if seconds is None else round(float(seconds), 1),
  }
  json.dumps(metadata)  # JSON-able before anything is written
  dst = ckpt_lib.Checkpointer(out_dir, keep=1)
  dst.save(source.step, {"params": nnx.state(adapted.model, nnx.Param)}, metadata)
  dst.close()
  os.makedirs(os.path.join(out_dir, writer_lib.STYLES_DIR), exist_ok=True)
  for i, (strokes, text) in enumerate(lines):
    writer_lib.save_style(os.path.join(out_dir, writer_lib.STYLES_DIR, f"{STYLE_PREFIX}{i}.npz"), strokes, text)
  return dst.path
