"""Style fidelity: how recognisably written lines keep the hand they were given, measured as writer identification.

As in the handwriting-generation literature (DSD 2020, SDT 2023), a small network embeds a line's hand, trained to
tell IAM-OnDB's training forms apart (a form is one writer's sitting: its lines share a hand; the text differs from
line to line, so what it learns is the hand, not the words). Fidelity is rank-1 retrieval among N held-out forms:
a line is matched to the form whose gallery line (another real line of that form) has the nearest embedding. A real
second line of the same form gives the ceiling; a line written by a primed or adapted writer gives the score; 1/N is
chance.

A line enters the network as a sequence along its ink, not along time, so that neither the pen's sampling rate nor
its speed matters (a writer that draws one point in three, a canvas at the browser's event rate and a tablet at
100 Hz give the same features): the line is deskewed (its least-squares baseline removed), scaled to unit height (the
5-95% range of its y), each stroke resampled every `ARC_STEP` line heights, and each step described by its direction
(cos, sin), its height in the line, and, at a pen lift, the jump to the next stroke (word and letter spacing).
Encoder: four 1-D convolutions (the last three with stride 2), masked mean and standard deviation over the line,
a linear map to `dim`, L2-normalised; trained with a cosine classifier over forms (CosFace margin).
"""

import dataclasses
import json
import os
import zipfile
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.errors import UserError

ARC_STEP = 0.1  # resampling step along the ink, in line heights (IAM-OnDB's raw spacing is about 0.06)
NUM_FEATURES = 6  # cos, sin, height in the line, jump dx, jump dy, pen lift
MIN_LINE_CHARS = 20  # lines that take part in retrieval trials: a few words at least
MAX_JUMP = 4.0  # jumps between strokes are clipped to this many line heights
ENCODER_FILE = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained", "hand_encoder.npz"
)
_PAD_MULTIPLE = 64  # padded feature lengths when embedding: few shapes, few compiles
_EMBED_BATCH = 64


class FidelityError(UserError, ValueError):
  """A line or encoder file the fidelity measure cannot use (empty line, a dot, a file that is not an encoder)."""


def line_features(offsets_Tx3: np.ndarray) -> np.ndarray:
  """The hand features of one line (raw or normalised offsets, y up) as float32 [N, NUM_FEATURES], N ~ ink length.

  Rows: per resampled step (cos, sin, y, 0, 0, 0); per pen lift (0, 0, y of the next stroke's start, jump dx,
  jump dy, 1). Scale, point rate, pen speed and baseline tilt are removed; proportions, slant, spacing, joins and
  stroke shapes are kept.
  """
  line = np.asarray(offsets_Tx3, np.float64)
  if line.ndim != 2 or line.shape[1] != 3 or len(line) < 2 or not np.all(np.isfinite(line)):
    raise FidelityError(f"a line needs finite offsets of shape [T >= 2, 3], got {line.shape}")
  points = strokes_lib.offsets_to_points(line)
  xy = points[:, :2]
  if np.ptp(xy[:, 0]) > 0:
    slope, intercept = np.polyfit(xy[:, 0], xy[:, 1], 1)
    xy = xy - np.stack([np.zeros(len(xy)), slope * xy[:, 0] + intercept], axis=1)
  lo, hi = np.percentile(xy[:, 1], [5, 95])
  height = hi - lo
  if not height > 0 or np.ptp(xy[:, 0]) < height:
    raise FidelityError("a line too small to judge (a dot or a single mark): write a few words")
  xy = (xy - np.array([xy[0, 0], np.median(xy[:, 1])])) / height
  rows, last = [], None
  for stroke in strokes_lib.points_to_strokes(np.concatenate([xy, points[:, 2:]], axis=1)):
    pts = _resample(stroke[:, :2])
    if last is not None:
      jump = np.clip(pts[0] - last, -MAX_JUMP, MAX_JUMP)
      rows.append(np.array([[0.0, 0.0, pts[0, 1], jump[0], jump[1], 1.0]]))
    if len(pts) > 1:
      step = np.diff(pts, axis=0)
      direction = step / np.maximum(np.linalg.norm(step, axis=1, keepdims=True), 1e-9)
      zeros = np.zeros((len(step), 3))
      rows.append(np.concatenate([direction, pts[1:, 1:2], zeros], axis=1))
    last = pts[-1]
  return np.concatenate(rows).astype(np.float32)


def _resample(stroke_Nx2: np.ndarray) -> np.ndarray:
  """Points every ARC_STEP along a stroke (its first and last kept); a stroke shorter than that is its first point."""
  seg = np.linalg.norm(np.diff(stroke_Nx2, axis=0), axis=1)
  arc = np.concatenate([[0.0], np.cumsum(seg)])
  if arc[-1] < ARC_STEP:
    return stroke_Nx2[:1]
  at = np.linspace(0.0, arc[-1], round(arc[-1] / ARC_STEP) + 1)
  return np.stack([np.interp(at, arc, stroke_Nx2[:, 0]), np.interp(at, arc, stroke_Nx2[:, 1])], axis=1)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """The hand encoder's sizes."""

  channels: tuple[int, ...] = (64, 96, 128, 128)
  kernel: int = 5
  dim: int = 64


class HandEncoder(nnx.Module):
  """Line features [B, N, NUM_FEATURES] with a mask [B, N] -> unit-norm hand embeddings [B, dim]."""

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.config = config
    sizes = (NUM_FEATURES,) + tuple(config.channels)
    self.convs = nnx.List(
      [
        nnx.Conv(
          sizes[i], sizes[i + 1], kernel_size=(config.kernel,), strides=(1 if i == 0 else 2,), padding="SAME", rngs=rngs
        )
        for i in range(len(config.channels))
      ]
    )
    self.norm = nnx.LayerNorm(2 * sizes[-1], rngs=rngs)
    self.out = nnx.Linear(2 * sizes[-1], config.dim, rngs=rngs)

  def __call__(self, features_BxNxF: jax.Array, mask_BxN: jax.Array) -> jax.Array:
    """Unit-norm embeddings [B, dim]: the convolutions, then masked mean and std over the line's length."""
    h, mask = features_BxNxF, mask_BxN
    for i, conv in enumerate(self.convs):
      if i > 0:
        mask = mask[:, ::2]
      h = jax.nn.gelu(conv(h)) * mask[:, :, None]
    count = jnp.maximum(jnp.sum(mask, axis=1, keepdims=True), 1.0)
    mean = jnp.sum(h, axis=1) / count
    var = jnp.sum(jnp.square(h - mean[:, None]) * mask[:, :, None], axis=1) / count
    z = self.out(self.norm(jnp.concatenate([mean, jnp.sqrt(var + 1e-6)], axis=-1)))
    return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


def pad_features(features: Sequence[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
  """(features [B, length, F] zero-padded or cut, mask [B, length]) for a list of line features."""
  out = np.zeros((len(features), length, NUM_FEATURES), np.float32)
  mask = np.zeros((len(features), length), np.float32)
  for b, f in enumerate(features):
    n = min(len(f), length)
    out[b, :n], mask[b, :n] = f[:n], 1.0
  return out, mask


@nnx.jit
def _embed_batch(encoder: HandEncoder, features_BxNxF, mask_BxN):
  return encoder(features_BxNxF, mask_BxN)


def embed_lines(encoder: HandEncoder, lines: Sequence[np.ndarray]) -> np.ndarray:
  """Unit-norm hand embeddings [L, dim] of lines (offsets [T, 3], raw or normalised), whole lines, batched."""
  features = [line_features(x) for x in lines]
  order = np.argsort([len(f) for f in features], kind="stable")
  out = np.zeros((len(lines), encoder.config.dim), np.float32)
  for lo in range(0, len(order), _EMBED_BATCH):
    idx = order[lo : lo + _EMBED_BATCH]
    length = -(-max(len(features[i]) for i in idx) // _PAD_MULTIPLE) * _PAD_MULTIPLE
    feats, mask = pad_features([features[i] for i in idx], length)
    pad = _EMBED_BATCH - len(idx)  # one batch size: one compile per length
    feats, mask = np.pad(feats, ((0, pad), (0, 0), (0, 0))), np.pad(mask, ((0, pad), (0, 0)))
    mask[len(idx) :, 0] = 1.0
    out[idx] = np.asarray(_embed_batch(encoder, jnp.asarray(feats), jnp.asarray(mask)))[: len(idx)]
  return out


def judgeable(offsets_Tx3: np.ndarray) -> bool:
  """Whether a line has enough ink for `line_features` (a written line can be a dot or nothing)."""
  try:
    line_features(offsets_Tx3)
    return True
  except FidelityError:
    return False


def retrieval_ranks(
  encoder: HandEncoder, lines: Sequence[np.ndarray], gallery_NxD: np.ndarray, truth_L: np.ndarray
) -> np.ndarray:
  """Per line, the rank (1 = nearest) of its own form's gallery line among all N by cosine similarity [L]; a line
  too small to judge ranks last (N)."""
  ranks = np.full(len(lines), len(gallery_NxD), np.int64)
  ok = [i for i, x in enumerate(lines) if judgeable(x)]
  if ok:
    sims = embed_lines(encoder, [lines[i] for i in ok]) @ gallery_NxD.T
    own = sims[np.arange(len(ok)), np.asarray(truth_L)[ok]]
    ranks[ok] = 1 + np.sum(sims > own[:, None], axis=1)
  return ranks


def rank1_hits(query_QxD: np.ndarray, gallery_NxD: np.ndarray, truth_Q: np.ndarray) -> np.ndarray:
  """Per query, whether its nearest gallery embedding (cosine) is its own form's [Q] bool."""
  return np.argmax(query_QxD @ gallery_NxD.T, axis=1) == np.asarray(truth_Q)


# ---------------------------------------------------------------------------------------------------------------
# Weights on disk: one .npz of the parameters by path, with the encoder's sizes and what it was trained on.


def save_encoder(encoder: HandEncoder, path: str, info: dict) -> None:
  """Write the encoder's parameters, sizes and `info` (training data, steps, ceiling) to one .npz, no pickle."""
  params = nnx.state(encoder, nnx.Param)
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  arrays = {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}
  meta = {"config": dataclasses.asdict(encoder.config), "info": info}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)


def load_encoder(path: str = ENCODER_FILE) -> tuple[HandEncoder, dict]:
  """(encoder, info) from a file written by `save_encoder`; FidelityError naming the file if it is not one."""
  if not os.path.isfile(path):
    raise FidelityError(
      f"hand encoder {path} does not exist (train one with python -m handwriting_jax.train_hand_encoder)"
    )
  try:
    with np.load(path, allow_pickle=False) as f:
      meta = json.loads(str(f["__meta__"]))
      arrays = {k: np.asarray(f[k]) for k in f.files if k != "__meta__"}
    config = EncoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
  except (KeyError, ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise FidelityError(f"hand encoder {path} is not an encoder file: {e}") from e
  encoder = HandEncoder(config, rngs=nnx.Rngs(0))
  params = nnx.state(encoder, nnx.Param)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  values = []
  for p, v in leaves:
    key = jax.tree_util.keystr(p)
    if key not in arrays or arrays[key].shape != v.shape:
      raise FidelityError(f"hand encoder {path}: parameter {key} is missing or has the wrong shape")
    values.append(jnp.asarray(arrays[key]))
  nnx.update(encoder, jax.tree_util.tree_unflatten(treedef, values))
  return encoder, meta["info"]


# ---------------------------------------------------------------------------------------------------------------
# The retrieval protocol.


def form_of(line_id: str) -> str:
  """The form (one writer's sitting) of an IAM-OnDB line id: `a01-000u-03` -> `a01-000u`."""
  return line_id.rsplit("-", 1)[0]


def text_of(form: str) -> str:
  """The text a form copies: `a01-000u` -> `a01-000` (several writers copied the same text)."""
  return form[:-1] if form[-1:].isalpha() else form


@dataclasses.dataclass(frozen=True)
class Trial:
  """One retrieval trial: N forms, and per form the index of its query line and of its gallery line."""

  forms: tuple[str, ...]
  query: tuple[int, ...]
  gallery: tuple[int, ...]


def choose_trial(
  ids: Sequence[str], num_forms: int, rng: np.random.Generator, texts: Sequence[str] | None = None
) -> Trial:
  """N forms with at least two lines and distinct texts (so that no two are matched by their words), and two
  different lines of each: the query (the prime, for a writer) and the gallery line. With `texts`, only lines of
  at least MIN_LINE_CHARS characters take part (a hand is judged, and primes, by a line of a few words, not by a
  word such as "extent.")."""
  by_form: dict[str, list[int]] = {}
  for i, line_id in enumerate(ids):
    if texts is None or len(texts[i].strip()) >= MIN_LINE_CHARS:
      by_form.setdefault(form_of(line_id), []).append(i)
  by_text: dict[str, list[str]] = {}
  for form in sorted(by_form):
    if len(by_form[form]) >= 2:
      by_text.setdefault(text_of(form), []).append(form)
  if len(by_text) < num_forms:
    raise FidelityError(
      f"fidelity needs {num_forms} forms with two lines or more and different texts; the "
      f"validation lines give {len(by_text)}"
    )
  texts = rng.choice(sorted(by_text), size=num_forms, replace=False)
  forms = tuple(str(rng.choice(by_text[t])) for t in texts)
  pairs = [rng.choice(by_form[f], size=2, replace=False) for f in forms]
  return Trial(forms, tuple(int(p[0]) for p in pairs), tuple(int(p[1]) for p in pairs))


def ceiling(
  embeddings_LxD: np.ndarray,
  ids: Sequence[str],
  num_forms: int,
  draws: int,
  seed: int = 0,
  texts: Sequence[str] | None = None,
) -> float:
  """Mean rank-1 retrieval of a real line among `num_forms` forms' other lines, over `draws` random trials (lines
  chosen as `choose_trial` does)."""
  rng = np.random.default_rng(seed)
  hits = []
  for _ in range(draws):
    trial = choose_trial(ids, num_forms, rng, texts)
    hits.append(
      rank1_hits(embeddings_LxD[list(trial.query)], embeddings_LxD[list(trial.gallery)], np.arange(num_forms)).mean()
    )
  return float(np.mean(hits))
