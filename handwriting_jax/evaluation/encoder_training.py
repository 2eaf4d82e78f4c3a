"""Train the hand encoder that the style-fidelity measure uses (`handwriting_jax.evaluation.fidelity`) on IAM-OnDB.

  python -m handwriting_jax.train_hand_encoder --iam_path=/data/iam-ondb [--out=encoder.npz]

Classes are the forms of Graves' training split (trainset + testset_t + testset_f; one form is one writer's sitting);
each step sees random crops of `--crop` feature rows (about a dozen characters) of random lines, at the raw point
rate or one point in three (what a writer trained with `data.downsample=3` draws), through a cosine classifier with
an additive margin (CosFace). At the end the ceiling is measured on the validation forms (testset_v, never seen):
rank-1 retrieval of a real line among another line of each of N forms. Only the weights are written (a few hundred
kB), never IAM-OnDB data. About 10 minutes on 2 CPU cores.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from handwriting_jax.data import iam as iam_lib
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.evaluation import fidelity as fid

_JUMP_THRESHOLD = 1000.0  # the IAM configs' data.jump_threshold: longer pen-down steps are pen lifts
_DOWNSAMPLE = (1, 3)  # point rates a line is seen at (raw, and a writer's one point in three)


def prepared_lines(lines: list[np.ndarray]) -> list[np.ndarray]:
  """Raw IAM lines with repeated points dropped and absurd pen-down jumps lifted, as the training data is read."""
  out = []
  for line in lines:
    line, _ = strokes_lib.drop_repeated_points(np.asarray(line, np.float32))
    line, _ = strokes_lib.split_jumps(line, _JUMP_THRESHOLD)
    out.append(line)
  return out


def features_at_rates(lines: list[np.ndarray]) -> list[list[np.ndarray]]:
  """Per line, its features at each rate of `_DOWNSAMPLE`; lines too small to judge are None."""
  out = []
  for line in tqdm(lines, desc="features", file=sys.stderr, leave=False):
    per_rate = []
    for k in _DOWNSAMPLE:
      x = (
        line
        if k == 1
        else strokes_lib.strokes_to_offsets(strokes_lib.downsample_strokes(strokes_lib.offsets_to_strokes(line), k))
      )
      try:
        per_rate.append(fid.line_features(x))
      except fid.FidelityError:
        per_rate = None
        break
    out.append(per_rate)
  return out


class Classifier(nnx.Module):
  """The encoder and a cosine classifier over the training forms."""

  def __init__(self, config: fid.EncoderConfig, num_classes: int, *, rngs: nnx.Rngs):
    self.encoder = fid.HandEncoder(config, rngs=rngs)
    self.centres = nnx.Param(jax.random.normal(rngs.params(), (num_classes, config.dim)) / np.sqrt(config.dim))

  def __call__(self, features_BxNxF, mask_BxN):
    """Cosine of each crop's embedding to each class centre [B, C]."""
    z = self.encoder(features_BxNxF, mask_BxN)
    c = self.centres[...] / jnp.linalg.norm(self.centres[...], axis=-1, keepdims=True)
    return z @ c.T


@nnx.jit(static_argnames=("margin", "scale"))
def train_step(model: Classifier, optimizer: nnx.Optimizer, features, mask, labels, *, margin: float, scale: float):
  """One CosFace step: (loss, accuracy)."""

  def loss_fn(m):
    cos = m(features, mask)
    onehot = jax.nn.one_hot(labels, cos.shape[-1])
    logits = scale * (cos - margin * onehot)
    return optax.softmax_cross_entropy(logits, onehot).mean(), jnp.mean(jnp.argmax(cos, -1) == labels)

  (loss, acc), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
  optimizer.update(model, grads)
  return loss, acc


def random_crops(features: list[list[np.ndarray]], picks: np.ndarray, crop: int, rng: np.random.Generator):
  """A batch of random crops of `crop` rows of the chosen lines, each at a random point rate."""
  chosen = []
  for i in picks:
    f = features[i][rng.integers(len(_DOWNSAMPLE))]
    start = rng.integers(max(len(f) - crop, 0) + 1)
    chosen.append(f[start : start + crop])
  return fid.pad_features(chosen, crop)


def train(
  iam_path: str,
  out: str,
  *,
  steps: int,
  batch: int,
  crop: int,
  learning_rate: float,
  margin: float,
  scale: float,
  seed: int,
) -> dict:
  """Train, measure the validation ceiling, save; returns what is saved as the encoder's info."""
  started = time.time()
  corpus = iam_lib.read_iam(iam_path)
  train_feats = features_at_rates(prepared_lines(corpus.train.lines))
  forms = [fid.form_of(i) for i in corpus.train.ids]
  counts: dict[str, int] = {}
  for f, feats in zip(forms, train_feats):
    if feats is not None:
      counts[f] = counts.get(f, 0) + 1
  classes = sorted(f for f, n in counts.items() if n >= 2)
  if len(classes) < 2:
    raise fid.FidelityError(
      f"{iam_path}: the training split has {len(classes)} forms with two judgeable lines or "
      "more; the encoder learns to tell at least two apart"
    )
  label_of = {f: k for k, f in enumerate(classes)}
  usable = np.array([i for i, f in enumerate(forms) if train_feats[i] is not None and f in label_of])
  labels = np.array([label_of[forms[i]] for i in usable])
  print(f"training on {len(usable)} lines of {len(classes)} forms", file=sys.stderr)

  rng = np.random.default_rng(seed)
  model = Classifier(fid.EncoderConfig(), len(classes), rngs=nnx.Rngs(seed))
  schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(200, steps // 10), steps)
  optimizer = nnx.Optimizer(model, optax.adamw(schedule, weight_decay=1e-4), wrt=nnx.Param)
  bar = tqdm(range(steps), desc="hand encoder", file=sys.stderr, mininterval=10)
  for _ in bar:
    picks = rng.integers(len(usable), size=batch)
    feats, mask = random_crops([train_feats[i] for i in usable], picks, crop, rng)
    loss, acc = train_step(
      model, optimizer, jnp.asarray(feats), jnp.asarray(mask), jnp.asarray(labels[picks]), margin=margin, scale=scale
    )
    bar.set_postfix(loss=f"{float(loss):.3f}", acc=f"{float(acc):.2f}", refresh=False)

  valid = zip(prepared_lines(corpus.valid.lines), corpus.valid.ids, corpus.valid.texts)
  valid = [(x, i, t) for x, i, t in valid if fid.judgeable(x)]
  emb = fid.embed_lines(model.encoder, [x for x, _, _ in valid])
  ids, texts = [i for _, i, _ in valid], [t for _, _, t in valid]

  def report(num_forms: int, draws: int) -> float | str:
    try:
      return fid.ceiling(emb, ids, num_forms, draws, seed=1, texts=texts)
    except fid.FidelityError as e:  # a small data set: too few validation forms for this N
      return str(e)

  info = {
    "trained_on": "IAM-OnDB trainset + testset_t + testset_f",
    "training_lines": len(usable),
    "training_forms": len(classes),
    "steps": steps,
    "batch": batch,
    "crop": crop,
    "seed": seed,
    "minutes": round((time.time() - started) / 60, 1),
    "ceiling": {
      "validation": f"IAM-OnDB testset_v, whole lines of {fid.MIN_LINE_CHARS}+ characters, never seen in training",
      "rank1_n20": report(20, draws=200),
      "rank1_n50": report(50, draws=100),
    },
  }
  fid.save_encoder(model.encoder, out, info)
  return info
