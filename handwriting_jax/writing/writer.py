"""The writer library: load a trained network (a workdir or the shipped model) and write lines and pages with it.

Used by the `write` and `evaluate` command lines (and anything else that writes): `load_writer` restores a
checkpoint into an abstract model (no real model or optimiser is built to learn the tree's shape), `write_lines`
samples lines of text in one style (primed with a real line, or the first line written freely priming the others),
`save_page` / `save_plots` draw them. Mistakes (unknown characters, empty text, a workdir without a checkpoint...)
raise `WriteError` or another `UserError` with a one-line message.
"""

import dataclasses
import os
import shutil
import tempfile
import textwrap
import zipfile

import jax
import ml_collections
import numpy as np
from flax import nnx

from handwriting_jax.data import draw
from handwriting_jax.data import ink as ink_lib
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.data.strokes import NormStats
from handwriting_jax.errors import UserError
from handwriting_jax.model import networks
from handwriting_jax.model import sampling as sample_lib
from handwriting_jax.training import checkpoint as ckpt_lib
from handwriting_jax.training import restore

PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained")
# Writers shipped in the package, by name: "iam" (the small network trained on IAM-OnDB with the iam_small recipe run
# for 14000 steps, with 1500 digit-rich synthetic lines;
# non-commercial research use, under IAM-OnDB's terms) and "embedded" (the same network on the embedded Hershey corpus).
SHIPPED = ("iam", "embedded")
DEFAULT_SHIPPED = "iam"
STYLES_DIR = "styles"  # a writer's own styles: WORKDIR/styles/NAME.npz (see save_style)
OUTPUT_EXTENSIONS = (".svg", ".png")
STYLE_EXTENSIONS = (".npz",) + ink_lib.INKML_EXTENSIONS + ink_lib.SVG_EXTENSIONS  # what `load_style_any` reads
MAX_STYLE_STEPS = 2000  # points of an ink style at the writer's scale (the shipped styles have about 250)
MAX_STYLE_BYTES = 16 << 20  # unpacked size of a style .npz (a line takes a few kB): larger is refused unread


class WriteError(UserError, ValueError):
  """A request `write` cannot serve: bad arguments, missing workdir or style, wrong network kind."""


@dataclasses.dataclass
class Writer:
  """A restored network with what is needed to use it: config, alphabet, normalisation, checkpoint step."""

  model: networks.Network
  config: ml_collections.ConfigDict
  alphabet: Alphabet
  stats: NormStats
  step: int
  workdir: str
  ema: bool = False  # the network holds the checkpoint's moving average of the parameters (train.ema_decay)

  @property
  def conditional(self) -> bool:
    """True for the synthesis network (writes text), False for the prediction network (scribbles)."""
    return isinstance(self.model, networks.SynthesisNetwork)


def pretrained_workdir(name: str | None = None) -> str:
  """The workdir of a writer shipped in the package (`SHIPPED`; default `DEFAULT_SHIPPED`); WriteError when it is
  unknown or not installed."""
  name = DEFAULT_SHIPPED if name is None else name
  if name not in SHIPPED:
    raise WriteError(f"no shipped writer is called {name!r}; the package ships {', '.join(SHIPPED)}")
  workdir = os.path.join(PRETRAINED_DIR, name)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir) or not os.listdir(ckpt_dir):
    raise WriteError(
      f"the shipped writer {name!r} is not installed at {workdir} (expected a checkpoints/ folder "
      "there); pass --workdir=DIR of a trained model"
    )
  return workdir


def resolve_workdir(workdir: str | None, shipped: str | None) -> str:
  """The workdir a command line names: `--workdir`, else the shipped writer `--shipped` (default
  `DEFAULT_SHIPPED`); WriteError when both are given."""
  if workdir is not None and shipped is not None:
    raise WriteError("give --workdir or --shipped, not both")
  return pretrained_workdir(shipped) if workdir is None else workdir


def style_names(workdir: str) -> list[str]:
  """Names of the styles saved with a writer (WORKDIR/styles/NAME.npz), sorted."""
  folder = os.path.join(workdir, STYLES_DIR)
  return sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".npz")) if os.path.isdir(folder) else []


def writer_style(writer: "Writer", name: str) -> tuple[np.ndarray, str]:
  """(raw offsets, text) of the style `name` saved with `writer`; WriteError listing the names there are."""
  names = style_names(writer.workdir)
  if name not in names:
    have = f"its styles are {', '.join(names)}" if names else "it has no saved styles"
    raise WriteError(f"the writer in {writer.workdir} has no style {name!r}; {have}")
  return load_style(os.path.join(writer.workdir, STYLES_DIR, f"{name}.npz"))


def load_writer(workdir: str | None = None, step: int | None = None, raw_weights: bool = False) -> Writer:
  """Restore the newest (or `step`) checkpoint of `workdir` (default: the default shipped writer), with the moving
  average of its parameters when the run kept one (`train.ema_decay`), unless `raw_weights`."""
  return _load(workdir, step, raw_weights)[0]


def _load(workdir: str | None, step: int | None, raw_weights: bool = False) -> tuple[Writer, dict]:
  """`load_writer`, plus the checkpoint's metadata."""
  workdir = pretrained_workdir() if workdir is None else workdir
  if not os.path.isdir(workdir):
    raise WriteError(f"workdir {os.path.abspath(workdir)} does not exist")
  r = restore.restore_network(workdir, step, raw_weights)
  return Writer(r.model, r.config, r.alphabet, r.stats, r.step, r.workdir, r.ema), r.metadata


def export_model(
  workdir: str, out_dir: str, step: int | None = None, average: int = 1, raw_weights: bool = False
) -> str:
  """Copy a training checkpoint's parameters (no optimiser or data-iterator state: a third of the size) with its
  config, alphabet and normalisation into `out_dir` as a params-only checkpoint that `load_writer` reads; this is
  how `handwriting_jax/pretrained/` is made. `average` > 1 writes the mean parameters of that many checkpoints, the
  newest (or `step`) and the ones saved just before it (checkpoint averaging: late checkpoints of one run lie in
  one basin, and their mean writes more steadily than any one of them). A run with a moving average exports the
  average (`load_writer`) unless `raw_weights`. Returns the checkpoint folder written."""
  if os.path.isdir(os.path.join(out_dir, "checkpoints")) and os.listdir(os.path.join(out_dir, "checkpoints")):
    raise WriteError(f"{os.path.abspath(out_dir)}/checkpoints already holds checkpoints; export into an empty folder")
  if average < 1:
    raise WriteError(f"--export_average={average}: average at least 1 checkpoint")
  writer, metadata = _load(workdir, step, raw_weights)
  metadata = {k: v for k, v in metadata.items() if k != "data_iter"}
  metadata["params_only"] = True
  metadata["exported_from"] = {"workdir": workdir, "step": writer.step, "ema": writer.ema}
  if average > 1:
    steps = restore.saved_steps(workdir, writer.step)[-average:]
    if len(steps) < average:
      raise WriteError(
        f"--export_average={average}: {os.path.abspath(workdir)} holds only {len(steps)} checkpoints "
        f"up to step {writer.step} ({steps})"
      )
    trees = [
      nnx.state((writer if s == writer.step else load_writer(workdir, s, raw_weights)).model, nnx.Param) for s in steps
    ]
    nnx.update(writer.model, jax.tree.map(lambda *xs: sum(xs[1:], xs[0]) / len(xs), *trees))
    metadata["exported_from"]["averaged_steps"] = steps
  dst = ckpt_lib.Checkpointer(out_dir, keep=1)
  dst.save(writer.step, {"params": nnx.state(writer.model, nnx.Param)}, metadata)
  dst.close()
  for name in style_names(writer.workdir):  # the writer's own styles travel with it
    os.makedirs(os.path.join(out_dir, STYLES_DIR), exist_ok=True)
    shutil.copyfile(
      os.path.join(writer.workdir, STYLES_DIR, f"{name}.npz"), os.path.join(out_dir, STYLES_DIR, f"{name}.npz")
    )
  return dst.path


# ---------------------------------------------------------------------------------------------------------------
# Text and styles.


def check_line_lengths(writer: Writer, lines: list[str], flag: str) -> None:
  """WriteError when a line is longer than the writer's training lines (`config.data.max_chars`): such a line takes
  minutes and gigabytes to write and comes out unreadable, so it is refused before any sampling, naming the flag."""
  limit = int(writer.config.data.max_chars)
  longest = max((len(line) for line in lines), default=0)
  if longest > limit:
    raise WriteError(
      f"{flag}: a line of {longest} characters; this writer learnt lines of at most {limit} and writes longer ones "
      f"unreadably: wrap the text into lines of {limit} characters or fewer"
    )


def wrap_text(text: str, width: int) -> list[str]:
  """Lines of at most `width` characters (textwrap; words longer than that are split); paragraphs kept."""
  if width < 1:
    raise WriteError(f"the line width must be at least 1 character, got {width}")
  lines = [line for para in text.splitlines() for line in textwrap.wrap(para, width=width)]
  if not lines:
    raise WriteError("the text is empty: give at least one character to write")
  return lines


def save_style(path: str, strokes_Tx3: np.ndarray, text: str) -> None:
  """Save a style (a real line: raw, de-normalised offsets [T, 3] and its text) as .npz, no pickle."""
  np.savez(path, strokes=np.asarray(strokes_Tx3, np.float32), text=np.array(text))


def load_style(path: str) -> tuple[np.ndarray, str]:
  """(raw offsets [T, 3], text) of a style file written by `save_style`; WriteError naming the file."""
  if not os.path.isfile(path):
    raise WriteError(f"style file {path} does not exist")
  try:
    with zipfile.ZipFile(path) as z:  # sizes as declared; reading never goes past them (a zip bomb stays packed)
      unpacked = sum(info.file_size for info in z.infolist())
  except Exception as e:  # an untrusted file fails in many ways (BadZipFile, NotImplementedError...)
    raise WriteError(f"style file {path} is not a style (.npz with 'strokes' [T, 3] and 'text'): {e}") from e
  if unpacked > MAX_STYLE_BYTES:
    raise WriteError(
      f"style file {path} unpacks to {unpacked:,} bytes; a style takes a few kB (at most {MAX_STYLE_BYTES:,})"
    )
  try:
    with np.load(path, allow_pickle=False) as f:
      strokes, text = np.asarray(f["strokes"], np.float32), str(f["text"])
  except Exception as e:  # empty, cut, not an .npz, an unsupported zip version (fuzz_inputs.py)
    raise WriteError(f"style file {path} is not a style (.npz with 'strokes' [T, 3] and 'text'): {e}") from e
  if strokes.ndim != 2 or strokes.shape[1] != 3 or not len(strokes) or not text:
    raise WriteError(
      f"style file {path}: expected strokes [T >= 1, 3] and a non-empty text, got strokes "
      f"{strokes.shape} and text {text!r}"
    )
  if not np.all(np.isfinite(strokes)) or np.abs(strokes[:, :2]).max() > ink_lib.MAX_COORD:
    raise WriteError(f"style file {path} holds non-finite or absurd offsets (beyond ±{ink_lib.MAX_COORD:g})")
  return strokes, text


@dataclasses.dataclass(frozen=True)
class HandScale:
  """What a line of the training data looks like in raw units: its height and the distance between its points."""

  line_height: float
  point_step: float


def hand_scale(writer: Writer) -> HandScale:
  """Median line height and pen-down point spacing of the writer's own styles (its samples of its training data's
  hand), the scale foreign ink is brought to; without styles, estimated from the normalisation (typical offset about
  the std)."""
  heights, steps = [], []
  for name in style_names(writer.workdir):
    line, _ = writer_style(writer, name)
    pts = strokes_lib.offsets_to_points(line)
    heights.append(float(np.ptp(pts[:, 1])))
    for s in strokes_lib.points_to_strokes(pts):
      if len(s) > 1:
        steps.extend(np.linalg.norm(np.diff(s, axis=0), axis=1).tolist())
  if heights and steps:
    return HandScale(float(np.median(heights)), float(np.median(steps)))
  step = float(np.mean(writer.stats.std))
  return HandScale(25.0 * step, step)


@dataclasses.dataclass(frozen=True)
class StyleInk:
  """A style file read before it meets a writer: raw offsets already in training units (.npz) or pen strokes in the
  file's own units (InkML, SVG; y up) that `style_offsets` rescales, and the text the line says."""

  path: str
  text: str
  offsets_Tx3: np.ndarray | None = None
  strokes: list[np.ndarray] | None = None


def read_style_file(path: str, text: str | None = None) -> StyleInk:
  """Read a style file by its extension: .npz (`save_style`; `text` replaces its own), InkML (.inkml, .xml; `text`
  replaces its truth annotation) or SVG (`text` required), so a mistake in it is reported before any writer is
  loaded; WriteError / InkError naming the file."""
  if text is not None:
    text = " ".join(text.split())
    if not text:
      raise WriteError(f"the text given for the style file {path} is empty; say what its line says")
  ext = os.path.splitext(path)[1].lower()
  if ext == ".npz":
    offsets, own = load_style(path)
    return StyleInk(path, text or own, offsets_Tx3=offsets)
  if ext in ink_lib.INKML_EXTENSIONS:
    strokes, own = ink_lib.read_inkml(path)
  elif ext in ink_lib.SVG_EXTENSIONS:
    strokes, own = ink_lib.read_svg(path), None
  else:
    raise WriteError(f"style file {path}: a style is read from a file ending in {', '.join(STYLE_EXTENSIONS)}")
  if not (text or own):
    where = 'holds no <annotation type="truth"> saying' if ext in ink_lib.INKML_EXTENSIONS else "cannot say"
    raise ink_lib.InkError(f"style file {path} {where} what its line says; give its text (write --style_text)")
  return StyleInk(path, text or own, strokes=strokes)


def style_offsets(writer: Writer, style: StyleInk) -> np.ndarray:
  """The raw offsets `[T, 3]` of a style read by `read_style_file` for `writer`: ink rescaled to the writer's hand
  (`hand_scale`: line height and point spacing, as the web page's canvas is); WriteError when it comes out much
  longer than one line."""
  if style.offsets_Tx3 is not None:
    return style.offsets_Tx3
  scale = hand_scale(writer)
  offsets_Tx3 = strokes_lib.strokes_to_training_units(style.strokes, scale.line_height, scale.point_step)
  if len(offsets_Tx3) > MAX_STYLE_STEPS:
    raise WriteError(
      f"style file {style.path} makes {len(offsets_Tx3)} points at the writer's scale; at most "
      f"{MAX_STYLE_STEPS}: give one line of a few words"
    )
  return offsets_Tx3


def load_style_any(writer: Writer, path: str, text: str | None = None) -> tuple[np.ndarray, str]:
  """(raw offsets [T, 3] in `writer`'s units, text) of a style file of any kind (`read_style_file`), ready for
  `make_prime` and `save_style`."""
  style = read_style_file(path, text)
  return style_offsets(writer, style), style.text


def dataset_style(config: ml_collections.ConfigDict, index: int) -> tuple[np.ndarray, str]:
  """(raw offsets, text) of validation line `index` of the data set named in `config.data`."""
  from handwriting_jax.data import dataset as dataset_lib

  data = dataset_lib.load_dataset(config.data)
  n = len(data.valid.strokes)
  if not 0 <= index < n:
    raise WriteError(
      f"--style={index}: the validation split of config.data (source {config.data.source!r}) "
      f"has {n} lines; choose 0..{n - 1}"
    )
  return data.stats.denormalise(data.valid.strokes[index]), data.valid.texts[index]


def make_prime(writer: Writer, strokes_Tx3: np.ndarray, text: str, check_text: bool = True) -> sample_lib.Prime:
  """A Prime from raw offsets, normalised with the checkpoint's statistics; UnknownCharactersError when what the
  line says holds characters the writer cannot read (its window would read something else). `check_text=False`
  for lines of the data set itself, whose unknown characters are read as in training (mapped)."""
  if check_text:
    writer.alphabet.check_known([text], what="the style's text (what its line says)")
  return sample_lib.Prime(writer.stats.normalise(strokes_Tx3), text)


# ---------------------------------------------------------------------------------------------------------------
# Pages.


def write_lines(
  writer: Writer,
  lines: list[str],
  *,
  bias: float,
  seed: int,
  prime: sample_lib.Prime | None = None,
  same_style: bool = True,
) -> sample_lib.Samples:
  """Sample `lines` of text in one style: primed with `prime`, or (same_style) the first line written freely then
  priming all the others; the samples of all lines, in order."""
  if not writer.conditional:
    raise WriteError(
      f"the checkpoint in {writer.workdir} is a prediction network: it cannot write text; use "
      "--num_lines for unconditional samples"
    )
  sample_lib.check_texts(lines, writer.alphabet)
  key = jax.random.key(seed)
  kw = sample_kwargs(writer, bias)
  if prime is None and (not same_style or len(lines) == 1):
    return sample_lib.sample(writer.model, key, texts=lines, **kw)
  if prime is not None:
    return primed_samples(writer, key, lines, prime, kw)
  first = sample_lib.sample(writer.model, jax.random.fold_in(key, 0), texts=lines[:1], **kw)
  own = sample_lib.Prime(first.strokes_BxTx3[0, : first.lengths_B[0]], lines[0])
  return _concat(first, primed_samples(writer, jax.random.fold_in(key, 1), lines[1:], own, kw))


def sample_kwargs(writer: Writer, bias) -> dict:
  """The `sample_lib.sample` arguments a writer always passes: alphabet, bias, length cap, statistics, stop rule."""
  return {
    "alphabet": writer.alphabet,
    "bias": bias,
    "max_steps_per_char": writer.config.sample.max_steps_per_char,
    "stats": writer.stats,
    "stop_rule": writer.config.sample.stop_rule,
  }


def primed_samples(
  writer: Writer, key: jax.Array, lines: list[str], prime: sample_lib.Prime, kw: dict
) -> sample_lib.Samples:
  """Primed samples (`kw`: arguments of `sample_lib.sample`) without the strokes that finish the prime (delayed i
  dots and t bars of its last word)."""
  samples = sample_lib.sample(writer.model, key, texts=lines, prime=prime, **kw)
  prefix = len(samples.texts[0]) - len(lines[0])  # prime text + separator
  lead = sample_lib.prime_lead_steps(samples.phi_BxTxU, samples.lengths_B, prefix)
  return sample_lib.drop_leading_steps(samples, lead, writer.stats)


def _concat(a: sample_lib.Samples, b: sample_lib.Samples) -> sample_lib.Samples:
  """Samples of `a` then `b`, zero-padded to a common number of steps T (axis 1) and characters U (phi axis 2)."""
  t = max(a.strokes_BxTx3.shape[1], b.strokes_BxTx3.shape[1])
  u = max(a.phi_BxTxU.shape[2], b.phi_BxTxU.shape[2])

  def cat(x: np.ndarray, y: np.ndarray, sizes: dict[int, int]) -> np.ndarray:
    def pad(z):
      return np.pad(z, [(0, sizes[i] - n if i in sizes else 0) for i, n in enumerate(z.shape)])

    return np.concatenate([pad(x), pad(y)], axis=0)

  return sample_lib.Samples(
    strokes_BxTx3=cat(a.strokes_BxTx3, b.strokes_BxTx3, {1: t}),
    mask_BxT=cat(a.mask_BxT, b.mask_BxT, {1: t}),
    lengths_B=np.concatenate([a.lengths_B, b.lengths_B]),
    finished_B=np.concatenate([a.finished_B, b.finished_B]),
    lines=a.lines + b.lines,
    texts=a.texts + b.texts,
    mixture=type(a.mixture)(*[cat(x, y, {1: t}) for x, y in zip(a.mixture, b.mixture)]),
    phi_BxTxU=cat(a.phi_BxTxU, b.phi_BxTxU, {1: t, 2: u}),
    kappa_BxTxK=cat(a.kappa_BxTxK, b.kappa_BxTxK, {1: t}),
  )


def check_output_path(path: str, flag: str = "--out") -> None:
  """WriteError before any work when `path` cannot be written: it is a folder, a file sits where a folder of it
  would go, or the folder it would go in does not take new files (read-only, no permission): probed by creating
  and removing a temporary file there."""
  full = os.path.abspath(path)
  if os.path.isdir(full):
    raise WriteError(f"{flag}={path} is a folder; give a file name")
  blocking = file_in_the_way(full)
  if blocking:
    raise WriteError(f"{flag}={path}: {blocking} is a file, so nothing can be written under it")
  folder = os.path.dirname(full)
  while not os.path.isdir(folder):
    folder = os.path.dirname(folder)
  try:
    with tempfile.TemporaryFile(dir=folder):
      pass
  except OSError as e:
    raise WriteError(f"{flag}={path}: nothing can be written in {folder} ({e.strerror or e})") from None


def file_in_the_way(path: str) -> str | None:
  """The nearest existing parent of `path` when it is a file (so nothing can be written under it), else None."""
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  return None if os.path.isdir(parent) else parent


def check_page_extension(path: str) -> str:
  """The page format `path` names (".svg" or ".png"), or a WriteError naming --out: checked before any sampling."""
  ext = os.path.splitext(path)[1].lower()
  if ext not in OUTPUT_EXTENSIONS:
    raise WriteError(f"--out={path}: the output must end in one of {OUTPUT_EXTENSIONS}")
  return ext


def save_page(lines: list[np.ndarray], path: str, texts: list[str] | None = None) -> None:
  """Write de-normalised lines as one page: SVG (one path per stroke) or PNG, by the extension of `path`."""
  ext = check_page_extension(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if ext == ".svg":
    draw.lines_to_svg(lines, path)
  else:
    draw.save_lines_png(lines, texts, path)


def save_plots(
  samples: sample_lib.Samples, stats: NormStats | None, stem: str, texts: list[str] | None = None
) -> list[str]:
  """Attention φ heat maps (synthesis) and density plots per line, as `{stem}_attention_{i}.png` /
  `{stem}_density_{i}.png`; returns the paths written."""
  paths = []
  for b, line in enumerate(samples.lines):
    if samples.phi_BxTxU is not None:
      path = f"{stem}_attention_{b}.png"
      draw.plot_attention(samples.line_phi(b), samples.texts[b], path, line_Tx3=line, title=texts[b] if texts else None)
      paths.append(path)
    mixture, eos = samples.line_mixture(b, stats)
    path = f"{stem}_density_{b}.png"
    draw.plot_density(line, mixture, eos, path, title=texts[b] if texts else None)
    paths.append(path)
  return paths
