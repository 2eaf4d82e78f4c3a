"""Write text in handwriting from a checkpoint: pages of wrapped text, style priming, plots, training samples.

  python -m handwriting_jax.write --workdir=DIR --text="..." --bias=0.75 --style=N --out=page.svg
  python -m handwriting_jax.write --workdir=DIR --num_lines=4 --out=scribbles.png     # prediction checkpoint

Without --workdir the pretrained model shipped in `handwriting_jax/pretrained/` is used. `--style=N` primes with
validation line N of the data set named in the checkpoint's config, `--style_file=x.npz` with a saved style
(`--save_style=x.npz` saves the one in use); every line of a page is written in the same style. Without a style, the
first line is written freely and primes the others (the page's style is a function of the seed). Mistakes (unknown
characters, empty text, a workdir without a checkpoint...) are reported as one line and a non-zero exit status.
"""

import dataclasses
import os
import sys
import textwrap

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from flax import nnx

from handwriting_jax import checkpoint as ckpt_lib
from handwriting_jax import draw
from handwriting_jax import sample as sample_lib
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.data.strokes import NormStats
from handwriting_jax.errors import UserError
from handwriting_jax.model import networks

PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
OUTPUT_EXTENSIONS = (".svg", ".png")


class WriteError(UserError, ValueError):
  """A request `write` cannot serve: bad arguments, missing workdir or style, wrong network kind."""


@dataclasses.dataclass
class Writer:
  """A restored network with what is needed to use it: config, alphabet, normalisation, checkpoint step."""
  model: networks._Network
  config: ml_collections.ConfigDict
  alphabet: Alphabet
  stats: NormStats
  step: int
  workdir: str

  @property
  def conditional(self) -> bool:
    """True for the synthesis network (writes text), False for the prediction network (scribbles)."""
    return isinstance(self.model, networks.SynthesisNetwork)


def pretrained_workdir() -> str:
  """The workdir of the pretrained synthesis model shipped in the package; WriteError when it is not installed."""
  ckpt_dir = os.path.join(PRETRAINED_DIR, "checkpoints")
  if not os.path.isdir(ckpt_dir) or not os.listdir(ckpt_dir):
    raise WriteError(f"no pretrained model is installed at {PRETRAINED_DIR} (expected a checkpoints/ folder "
                     "there); pass --workdir=DIR of a trained model")
  return PRETRAINED_DIR


def model_from_metadata(metadata: dict) -> tuple[networks._Network, ml_collections.ConfigDict, Alphabet, NormStats]:
  """A freshly initialised network of the checkpoint's config, with its alphabet and normalisation statistics."""
  from handwriting_jax import train  # pylint: disable=g-import-not-at-top  (train pulls in the data pipeline)
  config = ml_collections.ConfigDict(metadata["config"])
  alphabet = Alphabet(metadata["alphabet"])
  stats = NormStats.from_arrays(metadata["norm"])
  return train.create_model(config, alphabet.size), config, alphabet, stats


def load_writer(workdir: str | None = None, step: int | None = None) -> Writer:
  """Restore the newest (or `step`) checkpoint of `workdir` (default: the pretrained model)."""
  return _load(workdir, step)[0]


def _load(workdir: str | None, step: int | None) -> tuple[Writer, dict]:
  """`load_writer`, plus the checkpoint's metadata."""
  from handwriting_jax import optim  # pylint: disable=g-import-not-at-top
  from handwriting_jax import step as step_lib  # pylint: disable=g-import-not-at-top
  workdir = pretrained_workdir() if workdir is None else workdir
  if not os.path.isdir(workdir):
    raise WriteError(f"workdir {os.path.abspath(workdir)} does not exist")
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise ckpt_lib.NoCheckpointError(f"no checkpoint in {os.path.abspath(ckpt_dir)}")
  verbosity = logging.get_verbosity()
  logging.set_verbosity(min(verbosity, logging.ERROR))  # Orbax warns that a read-only manager will not save
  try:
    ckpt = ckpt_lib.Checkpointer(workdir, read_only=True)
  finally:
    logging.set_verbosity(verbosity)
  try:
    metadata = ckpt.restore_metadata(step)
    model, config, alphabet, stats = model_from_metadata(metadata)
    if metadata.get("params_only"):  # written by `export_model`: parameters, no optimiser state
      state, _ = ckpt.restore({"params": nnx.state(model, nnx.Param)}, step)
    else:  # a training checkpoint: restore the whole TrainState, built as train.py builds it
      _, abstract = step_lib.create_train_state(model, optim.make_optimizer(config.optim, config.train.num_steps))
      state, _ = ckpt.restore(abstract, step)
      state = {"params": state.params}
    restored_step = ckpt.latest_step() if step is None else step
  finally:
    ckpt.close()
  nnx.update(model, state["params"])
  return Writer(model, config, alphabet, stats, int(restored_step), os.path.abspath(workdir)), metadata


def export_model(workdir: str, out_dir: str, step: int | None = None) -> str:
  """Copy a training checkpoint's parameters (no optimiser or data-iterator state: a third of the size) with its
  config, alphabet and normalisation into `out_dir` as a params-only checkpoint that `load_writer` reads; this is
  how `handwriting_jax/pretrained/` is made. Returns the checkpoint folder written."""
  if os.path.isdir(os.path.join(out_dir, "checkpoints")) and os.listdir(os.path.join(out_dir, "checkpoints")):
    raise WriteError(f"{os.path.abspath(out_dir)}/checkpoints already holds checkpoints; export into an empty folder")
  writer, metadata = _load(workdir, step)
  metadata = {k: v for k, v in metadata.items() if k != "data_iter"}
  metadata["params_only"] = True
  metadata["exported_from"] = {"workdir": workdir, "step": writer.step}
  dst = ckpt_lib.Checkpointer(out_dir, keep=1)
  dst.save(writer.step, {"params": nnx.state(writer.model, nnx.Param)}, metadata)
  dst.close()
  return dst.path


# ---------------------------------------------------------------------------------------------------------------
# Text and styles.


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
    with np.load(path, allow_pickle=False) as f:
      strokes, text = np.asarray(f["strokes"], np.float32), str(f["text"])
  except (KeyError, ValueError, OSError) as e:
    raise WriteError(f"style file {path} is not a style (.npz with 'strokes' [T, 3] and 'text'): {e}") from e
  if strokes.ndim != 2 or strokes.shape[1] != 3 or not len(strokes) or not text:
    raise WriteError(f"style file {path}: expected strokes [T >= 1, 3] and a non-empty text, got strokes "
                     f"{strokes.shape} and text {text!r}")
  return strokes, text


def dataset_style(config: ml_collections.ConfigDict, index: int) -> tuple[np.ndarray, str]:
  """(raw offsets, text) of validation line `index` of the data set named in `config.data`."""
  from handwriting_jax.data import dataset as dataset_lib  # pylint: disable=g-import-not-at-top
  data = dataset_lib.load_dataset(config.data)
  n = len(data.valid.strokes)
  if not 0 <= index < n:
    raise WriteError(f"--style={index}: the validation split of config.data (source {config.data.source!r}) "
                     f"has {n} lines; choose 0..{n - 1}")
  return data.stats.denormalise(data.valid.strokes[index]), data.valid.texts[index]


def make_prime(writer: Writer, strokes_Tx3: np.ndarray, text: str) -> sample_lib.Prime:
  """A Prime from raw offsets, normalised with the checkpoint's statistics."""
  return sample_lib.Prime(writer.stats.normalise(strokes_Tx3), text)


# ---------------------------------------------------------------------------------------------------------------
# Pages.


def write_lines(writer: Writer, lines: list[str], *, bias: float, seed: int, prime: sample_lib.Prime | None = None,
                same_style: bool = True) -> sample_lib.Samples:
  """Sample `lines` of text in one style: primed with `prime`, or (same_style) the first line written freely then
  priming all the others; the samples of all lines, in order."""
  if not writer.conditional:
    raise WriteError(f"the checkpoint in {writer.workdir} is a prediction network: it cannot write text; use "
                     "--num_lines for unconditional samples")
  sample_lib.check_texts(lines, writer.alphabet)
  key = jax.random.key(seed)
  kw = dict(alphabet=writer.alphabet, bias=bias, max_steps_per_char=writer.config.sample.max_steps_per_char,
            stats=writer.stats)
  if prime is None and (not same_style or len(lines) == 1):
    return sample_lib.sample(writer.model, key, texts=lines, **kw)
  if prime is not None:
    return _primed(writer, key, lines, prime, kw)
  first = sample_lib.sample(writer.model, jax.random.fold_in(key, 0), texts=lines[:1], **kw)
  own = sample_lib.Prime(first.strokes_BxTx3[0, :first.lengths_B[0]], lines[0])
  return _concat(first, _primed(writer, jax.random.fold_in(key, 1), lines[1:], own, kw))


def _primed(writer: Writer, key: jax.Array, lines: list[str], prime: sample_lib.Prime, kw: dict
            ) -> sample_lib.Samples:
  """Primed samples without the strokes that finish the prime (delayed i dots and t bars of its last word)."""
  samples = sample_lib.sample(writer.model, key, texts=lines, prime=prime, **kw)
  prefix = len(samples.texts[0]) - len(lines[0])  # prime text + separator
  lead = sample_lib.prime_lead_steps(samples.phi_BxTxU, samples.strokes_BxTx3, samples.lengths_B, prefix)
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
      strokes_BxTx3=cat(a.strokes_BxTx3, b.strokes_BxTx3, {1: t}), mask_BxT=cat(a.mask_BxT, b.mask_BxT, {1: t}),
      lengths_B=np.concatenate([a.lengths_B, b.lengths_B]), finished_B=np.concatenate([a.finished_B, b.finished_B]),
      lines=a.lines + b.lines, texts=a.texts + b.texts,
      mixture=type(a.mixture)(*[cat(x, y, {1: t}) for x, y in zip(a.mixture, b.mixture)]),
      phi_BxTxU=cat(a.phi_BxTxU, b.phi_BxTxU, {1: t, 2: u}), kappa_BxTxK=cat(a.kappa_BxTxK, b.kappa_BxTxK, {1: t}))


def save_page(lines: list[np.ndarray], path: str, texts: list[str] | None = None) -> None:
  """Write de-normalised lines as one page: SVG (one path per stroke) or PNG, by the extension of `path`."""
  ext = os.path.splitext(path)[1].lower()
  if ext not in OUTPUT_EXTENSIONS:
    raise WriteError(f"--out={path}: the output must end in one of {OUTPUT_EXTENSIONS}")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if ext == ".svg":
    draw.lines_to_svg(lines, path)
  else:
    draw.save_lines_png(lines, texts, path)


def save_plots(samples: sample_lib.Samples, stats: NormStats | None, stem: str, texts: list[str] | None = None
               ) -> list[str]:
  """Attention φ heat maps (synthesis) and density plots per line, as `{stem}_attention_{i}.png` /
  `{stem}_density_{i}.png`; returns the paths written."""
  paths = []
  for b, line in enumerate(samples.lines):
    if samples.phi_BxTxU is not None:
      path = f"{stem}_attention_{b}.png"
      draw.plot_attention(samples.line_phi(b), samples.texts[b], path, line_Tx3=line,
                          title=texts[b] if texts else None)
      paths.append(path)
    mixture, eos = samples.line_mixture(b, stats)
    path = f"{stem}_density_{b}.png"
    draw.plot_density(line, mixture, eos, path, title=texts[b] if texts else None)
    paths.append(path)
  return paths


# ---------------------------------------------------------------------------------------------------------------
# Samples during training.


def write_training_samples(graphdef: nnx.GraphDef, params: nnx.State, metadata: dict,
                           config: ml_collections.ConfigDict, workdir: str, step: int) -> list[str]:
  """Write WORKDIR/samples/step_{step}.png (config.sample.texts at config.sample.bias, or unconditional lines for a
  prediction network) and, for synthesis, attention_{step}.png of the first text; process 0 only.

  `params` may be sharded or replicated over many devices (one local replica is used); the seed is fixed
  (config.seed), so successive files show the same random draws as training goes on. Returns the paths written.
  """
  if jax.process_index() != 0:
    return []
  local = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, params)
  model = nnx.merge(graphdef, local)
  alphabet = Alphabet(metadata["alphabet"])
  stats = NormStats.from_arrays(metadata["norm"])
  out_dir = os.path.join(workdir, "samples")
  os.makedirs(out_dir, exist_ok=True)
  key = jax.random.key(config.seed)
  texts = list(config.sample.texts)
  paths = []
  if isinstance(model, networks.SynthesisNetwork):
    usable = []
    for text in texts:
      unknown = alphabet.unknown_chars(text)
      if unknown:
        logging.warning("config.sample.texts: %r holds characters outside the alphabet %s; writing it without them",
                        text, unknown)
        text = "".join(c for c in text if c not in unknown)
      if text.strip():
        usable.append(text)
    if not usable:
      logging.warning("config.sample.texts: nothing to write with this alphabet; no samples at step %d", step)
      return []
    samples = sample_lib.sample(model, key, texts=usable, alphabet=alphabet, bias=config.sample.bias,
                                max_steps_per_char=config.sample.max_steps_per_char, stats=stats)
    captions = [f"{t} (bias {config.sample.bias}, step {step})" for t in usable]
    path = os.path.join(out_dir, f"attention_{step:07d}.png")
    draw.plot_attention(samples.line_phi(0), samples.texts[0], path, line_Tx3=samples.lines[0],
                        title=f"step {step}")
    paths.append(path)
  else:
    samples = sample_lib.sample(model, key, num_lines=max(len(texts), 1), bias=config.sample.bias,
                                max_steps=config.sample.max_steps, stats=stats)
    captions = [f"unconditional (bias {config.sample.bias}, step {step})"] * len(samples.lines)
  path = os.path.join(out_dir, f"step_{step:07d}.png")
  draw.save_lines_png(samples.lines, captions, path)
  return [path] + paths


# ---------------------------------------------------------------------------------------------------------------
# Command line.

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so importing this module defines none)."""
  flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/ (default: the pretrained model).")
  flags.DEFINE_integer("checkpoint_step", None, "Checkpoint step to use (default: the newest).")
  flags.DEFINE_string("text", None, "Text to write (synthesis checkpoints); wrapped into lines of --width characters.")
  flags.DEFINE_float("bias", None, "Sampling bias b >= 0 (eqs. 61-62; default: the checkpoint's config.sample.bias).")
  flags.DEFINE_integer("style", None, "Prime with validation line N of the checkpoint's data set.")
  flags.DEFINE_string("style_file", None, "Prime with a style saved by --save_style (.npz).")
  flags.DEFINE_string("save_style", None, "Save the --style line used to this .npz file.")
  flags.DEFINE_bool("same_style", True, "Without a style: write the first line freely and prime the others with it.")
  flags.DEFINE_string("out", "handwriting.svg", "Output file, .svg (one path per stroke) or .png.")
  flags.DEFINE_integer("seed", 0, "Random seed: the same seed writes the same page.")
  flags.DEFINE_integer("width", 40, "Characters per line when wrapping --text.")
  flags.DEFINE_bool("plots", False, "Also write attention and density plots beside --out.")
  flags.DEFINE_integer("num_lines", None, "Prediction checkpoints: number of unconditional lines.")
  flags.DEFINE_string("animation", None, "Also animate the pen writing the first line: a .gif or .html file.")
  flags.DEFINE_string("export", None, "Instead of writing: copy the model's parameters (no optimiser state) into "
                      "this empty folder as a params-only checkpoint (how handwriting_jax/pretrained is made).")


def run(workdir: str | None, out: str, *, text: str | None = None, bias: float | None = None,
        style: int | None = None, style_file: str | None = None, save_style_path: str | None = None,
        same_style: bool = True, seed: int = 0, width: int = 40, plots: bool = False, num_lines: int | None = None,
        checkpoint_step: int | None = None, animation: str | None = None) -> list[str]:
  """The command line as a function: write the page (and plots, animation); returns the paths written."""
  if os.path.splitext(out)[1].lower() not in OUTPUT_EXTENSIONS:
    raise WriteError(f"--out={out}: the output must end in one of {OUTPUT_EXTENSIONS}")
  if animation is not None and os.path.splitext(animation)[1].lower() not in (".gif", ".html"):
    raise WriteError(f"--animation={animation}: the animation must end in .gif or .html")
  if style is not None and style_file is not None:
    raise WriteError("give --style or --style_file, not both")
  if save_style_path is not None and style is None:
    raise WriteError("--save_style saves the line chosen with --style=N; give --style")
  lines = None if text is None else wrap_text(text, width)
  writer = load_writer(workdir, checkpoint_step)
  bias = writer.config.sample.bias if bias is None else bias
  stem = os.path.splitext(out)[0]
  if not writer.conditional:
    if text is not None or style is not None or style_file is not None:
      raise WriteError(f"the checkpoint in {writer.workdir} is a prediction network: it writes unconditionally; "
                       "use --num_lines instead of --text / --style")
    samples = sample_lib.sample(writer.model, jax.random.key(seed), num_lines=num_lines or 1, bias=bias,
                                max_steps=writer.config.sample.max_steps, stats=writer.stats)
    save_page(samples.lines, out)
    return [out] + (save_plots(samples, writer.stats, stem) if plots else []) + _animate(samples, animation)
  if num_lines is not None:
    raise WriteError("--num_lines is for prediction checkpoints; this is a synthesis network: give --text")
  if lines is None:
    raise WriteError("give --text to write (this is a synthesis checkpoint)")
  sample_lib.check_texts(lines, writer.alphabet)
  prime, written = None, []
  if style is not None or style_file is not None:
    strokes, prime_text = dataset_style(writer.config, style) if style is not None else load_style(style_file)
    prime = make_prime(writer, strokes, prime_text)
    if save_style_path is not None:
      save_style(save_style_path, strokes, prime_text)
      written.append(save_style_path)
  samples = write_lines(writer, lines, bias=bias, seed=seed, prime=prime, same_style=same_style)
  save_page(samples.lines, out, lines)
  written.append(out)
  if plots:
    written += save_plots(samples, writer.stats, stem, lines)
  written += _animate(samples, animation, lines)
  unfinished = [lines[b] for b in np.flatnonzero(~samples.finished_B)]
  if unfinished:
    logging.warning("%d line(s) reached the length cap before the window finished the text: %s", len(unfinished),
                    unfinished)
  return written


def _animate(samples: sample_lib.Samples, path: str | None, texts: list[str] | None = None) -> list[str]:
  """The pen writing the first line, as a GIF or HTML page at `path` (nothing when None)."""
  if path is None:
    return []
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  draw.save_animation(samples.lines[0], path, text=texts[0] if texts else None)
  return [path]


USER_ERRORS = (UserError, FileNotFoundError)


def main(argv):
  """Entry point: one-line errors for user mistakes (no traceback), exit status 1."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # keep Orbax's restore chatter off the console
  try:
    if FLAGS.export:
      print(export_model(FLAGS.workdir or pretrained_workdir(), FLAGS.export, FLAGS.checkpoint_step))
      return
    paths = run(FLAGS.workdir, FLAGS.out, text=FLAGS.text, bias=FLAGS.bias, style=FLAGS.style,
                style_file=FLAGS.style_file, save_style_path=FLAGS.save_style, same_style=FLAGS.same_style,
                seed=FLAGS.seed, width=FLAGS.width, plots=FLAGS.plots, num_lines=FLAGS.num_lines,
                checkpoint_step=FLAGS.checkpoint_step, animation=FLAGS.animation)
  except USER_ERRORS as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    sys.exit(1)
  for p in paths:
    print(p)


if __name__ == "__main__":
  define_flags()
  app.run(main)
