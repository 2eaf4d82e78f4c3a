"""A static web site that writes in the browser with no server: the network's one-step function as ONNX, run by
onnxruntime-web in a web worker (`serving/web/`), the sampling loop, priming and drawing in JavaScript.

`build_site(writer, out_dir)` writes:
  index.html, page.css, app.js, worker.js, handwriting.js,   the page, its look and its scripts (copied from
  inkpad.js                                                  `serving/web/`)
  model.onnx                                                 `step_function`: one step of the synthesis network,
                                                             B = 1, its weights in float16 by default (`half_rounded`)
  model.json                                                 alphabet, normalisation, hand scale, shapes, styles
  ort/                                                       onnxruntime-web's single-thread WebAssembly build (pinned)
The WebAssembly binary is stored gzipped (the page inflates it with the browser's DecompressionStream), so the site
stays small on any static host. onnxruntime-web comes from its npm package: `--ort_dir` (an extracted package or its
`dist/`), else a copy cached under ~/.cache/handwriting_jax, else `npm pack onnxruntime-web@ORT_WEB_VERSION` (needs
npm and the npm registry, at export time only; the site itself needs no network).
"""

import dataclasses
import gzip
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from handwriting_jax.errors import UserError
from handwriting_jax.model import lstm, mdn, networks, window
from handwriting_jax.model import sampling as sample_lib
from handwriting_jax.writing import writer as writer_lib

ORT_WEB_VERSION = "1.31.1"  # the onnxruntime-web release the page is tested with
# What the page loads from the package's dist/: the ES module API of the WebAssembly-only build, its loader, and
# the binary (stored as .wasm.gz).
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_FILES = ("index.html", "page.css", "app.js", "worker.js", "handwriting.js", "inkpad.js")
MAX_CHARS = 128  # window positions of the exported step: the prime's text, a space and the line, padded
INPUT_NAMES = ("x", "chars", "bias", "kappa", "w", "h", "c")
OUTPUT_NAMES = ("log_pi", "mu", "log_sigma", "rho", "eos_logit", "phi", "kappa_out", "w_out", "h_out", "c_out")
WEIGHT_DTYPES = ("float16", "float32")  # how model.onnx stores the weights; the arithmetic is float32 either way
HALF_MIN_SIZE = 256  # arrays this large are stored in float16 (constants and small vectors stay float32)
WEB_DIR = os.path.join(os.path.dirname(__file__), "web")


class ExportError(UserError, RuntimeError):
  """The site cannot be built: a prediction writer, no onnxruntime-web, an output folder in the way."""


def float32_network(model: networks.SynthesisNetwork) -> networks.SynthesisNetwork:
  """A copy of `model` with plain float32 matmuls, the page's arithmetic (onnxruntime has no bfloat16 matmul): a
  writer trained with bf16 matmuls (`model.compute_dtype`) is exported as float32 matmuls of the same weights."""
  model = nnx.clone(model)
  model.compute_dtype = None  # lstm.matmul: plain float32
  return model


def step_function(model: networks.SynthesisNetwork, max_chars: int = MAX_CHARS):
  """(fn, input specs): one sampling step of `model` for one line over flat arrays, what the page calls per point.

  fn(x [1, 3], chars [1, U] int32 (0 = padding), bias [1], kappa [1, K], w [1, A], h [L, 1, H], c [L, 1, H]) ->
  (log π [1, M], μ [1, M, 2], log σ [1, M, 2], ρ [1, M], eos logit [1]: the biased mixture of eqs. 18-22 and 61-62;
  φ(t, u) for u = 1..U+1 [1, U+1], unmasked, for the stop rule and the lead-in cut; then the new κ, w, h, c).
  """
  model = float32_network(model)
  graphdef, params = nnx.split(model)
  num_layers, hidden = model.num_layers, model.hidden
  k, a = model.num_gaussians, model.alphabet_size

  def step(x_1x3, chars_1xU, bias_1, kappa_1xK, w_1xA, h_Lx1xH, c_Lx1xH):
    net = nnx.merge(graphdef, params)
    carries = tuple(lstm.LSTMCarry(h_Lx1xH[n], c_Lx1xH[n]) for n in range(num_layers))
    state = networks.NetworkState(carries, kappa_1xK, w_1xA)
    mask_1xU = (chars_1xU != 0).astype(jnp.float32)
    state, y_hat, aux = net.step(state, x_1x3, net.one_hot(chars_1xU), mask_1xU)
    mix = mdn.mixture_params(y_hat, bias_1)
    phi_1xV = window.window_phi(aux["alpha"], aux["beta"], aux["kappa"], chars_1xU.shape[1] + 1)
    h_new = jnp.stack([carry.h for carry in state.lstm])
    c_new = jnp.stack([carry.c for carry in state.lstm])
    return mix.log_pi, mix.mu, mix.log_sigma, mix.rho, mix.eos_logit, phi_1xV, state.kappa, state.w, h_new, c_new

  f32 = jnp.float32
  specs = (
    jax.ShapeDtypeStruct((1, 3), f32),
    jax.ShapeDtypeStruct((1, max_chars), jnp.int32),
    jax.ShapeDtypeStruct((1,), f32),
    jax.ShapeDtypeStruct((1, k), f32),
    jax.ShapeDtypeStruct((1, a), f32),
    jax.ShapeDtypeStruct((num_layers, 1, hidden), f32),
    jax.ShapeDtypeStruct((num_layers, 1, hidden), f32),
  )
  return step, specs


def half_rounded(model: networks.SynthesisNetwork) -> networks.SynthesisNetwork:
  """A copy of `model` with every weight array of at least HALF_MIN_SIZE numbers rounded to float16 and back: the
  network a site exported with `weight_dtype="float16"` runs (the JAX reference of its tests)."""
  graphdef, params = nnx.split(model)

  def rounded(a):
    return a.astype(jnp.float16).astype(a.dtype) if a.dtype == jnp.float32 and a.size >= HALF_MIN_SIZE else a

  return nnx.merge(graphdef, jax.tree.map(rounded, params))


def _store_half(proto) -> None:
  """Store every float32 initializer of at least HALF_MIN_SIZE numbers of `proto` as float16, cast back to float32
  when the model loads (a Cast node under its old name): half the bytes, the same arithmetic."""
  from onnx import TensorProto, helper, numpy_helper

  graph, casts = proto.graph, []
  for init in list(graph.initializer):
    if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < HALF_MIN_SIZE:
      continue
    half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_f16")
    graph.initializer.remove(init)
    graph.initializer.append(half)
    casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
  for i, node in enumerate(casts):
    graph.node.insert(i, node)


def export_onnx(
  model: networks.SynthesisNetwork, path: str, max_chars: int = MAX_CHARS, weight_dtype: str = "float32"
) -> None:
  """Write `step_function(model)` as an ONNX model to `path` (jax2onnx, the `web` extra); `weight_dtype="float16"`
  stores the weights in half precision (`half_rounded` is the network it then runs)."""
  if weight_dtype not in WEIGHT_DTYPES:
    raise ExportError(f"the weights are stored as one of {WEIGHT_DTYPES}, not {weight_dtype!r}")
  # jax2onnx logs, at import and per export, plugins of libraries this network does not use (dm_pix) that it
  # skips, and onnx_ir notes on constant shapes: neither says anything about this export.
  quiet = {name: logging.getLogger(name) for name in ("jax2onnx", "onnx_ir")}
  levels = {name: log.level for name, log in quiet.items()}
  for log in quiet.values():
    log.setLevel(logging.ERROR)
  try:
    try:
      from jax2onnx import to_onnx
    except ImportError as e:
      raise ExportError("exporting the network needs jax2onnx: pip install -e '.[web]'") from e
    import onnx

    fn, specs = step_function(model, max_chars)
    proto = to_onnx(
      fn, specs, model_name="handwriting_step", input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES)
    )
    if weight_dtype == "float16":
      _store_half(proto)
    onnx.save(proto, path)
  finally:
    for name, log in quiet.items():
      log.setLevel(levels[name])


def site_metadata(writer: writer_lib.Writer, max_chars: int = MAX_CHARS) -> dict:
  """What the page needs beside the network: alphabet (id order from 2), normalisation, the hand's scale (drawn
  ink is brought to it), shapes, sampling defaults and the writer's own styles (normalised offsets and text)."""
  model, cfg = writer.model, writer.config
  scale = writer_lib.hand_scale(writer)
  styles = []
  for name in writer_lib.style_names(writer.workdir):
    raw_Tx3, text = writer_lib.writer_style(writer, name)
    offsets = writer.stats.normalise(raw_Tx3)
    styles.append({"name": name, "text": text, "offsets": np.round(offsets, 5).tolist()})
  return {
    "format": 1,
    "alphabet": writer.alphabet.chars,
    "mean": [float(v) for v in writer.stats.mean],
    "std": [float(v) for v in writer.stats.std],
    "line_height": scale.line_height,
    "point_step": scale.point_step,
    "downsample": int(cfg.data.downsample),
    "num_layers": model.num_layers,
    "hidden": model.hidden,
    "num_window_gaussians": model.num_gaussians,
    "num_mixtures": int(cfg.model.num_mixtures),
    "alphabet_size": model.alphabet_size,
    "max_chars": max_chars,
    "max_steps_per_char": float(cfg.sample.max_steps_per_char),
    "stop_rule": str(cfg.sample.stop_rule),
    "bias": float(cfg.sample.bias),
    "start_point": list(sample_lib.START_POINT),
    "step": writer.step,
    "styles": styles,
  }


def _ort_cache_dir() -> str:
  return os.path.join(os.path.expanduser("~/.cache/handwriting_jax"), f"onnxruntime-web-{ORT_WEB_VERSION}")


def _dist_of(folder: str) -> str | None:
  """`folder` or its `dist/` when it holds every file of ORT_FILES, else None."""
  for candidate in (os.path.join(folder, "dist"), folder):
    if all(os.path.isfile(os.path.join(candidate, f)) for f in ORT_FILES):
      return candidate
  return None


def _npm_pack(dest: str) -> None:
  """Fetch onnxruntime-web@ORT_WEB_VERSION with `npm pack` and extract its dist/ files of ORT_FILES into `dest`."""
  npm = shutil.which("npm")
  if not npm:
    raise ExportError(
      f"onnxruntime-web {ORT_WEB_VERSION} is not cached and npm is not installed: install Node.js's npm "
      "(apt-get install npm) or give --ort_dir=DIR (an extracted onnxruntime-web package)"
    )
  staging = dest + ".tmp"
  shutil.rmtree(staging, ignore_errors=True)  # left by an export cut short
  with tempfile.TemporaryDirectory() as tmp:
    cmd = [npm, "pack", f"onnxruntime-web@{ORT_WEB_VERSION}", "--silent", "--pack-destination", tmp]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    tgz = [f for f in os.listdir(tmp) if f.endswith(".tgz")]
    if done.returncode or not tgz:
      raise ExportError(f"npm pack onnxruntime-web@{ORT_WEB_VERSION} failed: {done.stderr.strip()[-300:]}")
    with tarfile.open(os.path.join(tmp, tgz[0])) as tar:
      for name in ORT_FILES:
        member = tar.extractfile(f"package/dist/{name}")
        if member is None:
          raise ExportError(f"onnxruntime-web@{ORT_WEB_VERSION} has no dist/{name}")
        os.makedirs(staging, exist_ok=True)
        with open(os.path.join(staging, name), "wb") as out:
          shutil.copyfileobj(member, out)
  shutil.rmtree(dest, ignore_errors=True)  # an incomplete copy
  os.replace(staging, dest)


def ort_web_dist(ort_dir: str | None = None) -> str:
  """The folder holding onnxruntime-web's ORT_FILES: `ort_dir` (ExportError if it lacks them), else the cached copy,
  fetched once with npm."""
  if ort_dir:
    found = _dist_of(ort_dir)
    if not found:
      raise ExportError(f"--ort_dir={ort_dir} holds no onnxruntime-web build: expected {', '.join(ORT_FILES)}")
    return found
  cache = _ort_cache_dir()
  if not _dist_of(cache):
    _npm_pack(cache)
  return cache


@dataclasses.dataclass(frozen=True)
class SiteSummary:
  """What `build_site` wrote: the folder and each file's size in bytes."""

  out_dir: str
  sizes: dict[str, int]

  @property
  def total_bytes(self) -> int:
    """Bytes of the whole site."""
    return sum(self.sizes.values())


def check_out_dir(out_dir: str) -> None:
  """ExportError when `out_dir` is a file or a non-empty folder that is not an earlier site (nothing is lost)."""
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ExportError(f"--out={out_dir} is a file; give a folder for the site")
  if os.path.isdir(out_dir) and os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, "model.json")):
    raise ExportError(f"--out={out_dir} is a folder holding other files; give an empty or new folder")


def build_site(
  writer: writer_lib.Writer, out_dir: str, ort_dir: str | None = None, weight_dtype: str = "float16"
) -> SiteSummary:
  """Write the static site for `writer` into `out_dir` (see the module docstring), its weights stored as
  `weight_dtype`; returns its file sizes."""
  if weight_dtype not in WEIGHT_DTYPES:
    raise ExportError(f"the weights are stored as one of {WEIGHT_DTYPES}, not {weight_dtype!r}")
  if not writer.conditional:
    raise ExportError(f"{writer.workdir} holds a prediction network: the page writes text, it needs synthesis")
  check_out_dir(out_dir)
  dist = ort_web_dist(ort_dir)
  os.makedirs(os.path.join(out_dir, "ort"), exist_ok=True)
  for name in PAGE_FILES:
    shutil.copyfile(os.path.join(WEB_DIR, name), os.path.join(out_dir, name))
  for name in ORT_FILES:
    src = os.path.join(dist, name)
    if name.endswith(".wasm"):
      with open(src, "rb") as f, gzip.open(os.path.join(out_dir, "ort", name + ".gz"), "wb", compresslevel=9) as g:
        shutil.copyfileobj(f, g)
    else:
      shutil.copyfile(src, os.path.join(out_dir, "ort", name))
  export_onnx(writer.model, os.path.join(out_dir, "model.onnx"), weight_dtype=weight_dtype)
  with open(os.path.join(out_dir, "model.json"), "w") as f:
    json.dump({**site_metadata(writer), "weight_dtype": weight_dtype}, f, separators=(",", ":"))
  sizes = {}
  for root, _, files in os.walk(out_dir):
    for name in files:
      path = os.path.join(root, name)
      sizes[os.path.relpath(path, out_dir)] = os.path.getsize(path)
  return SiteSummary(out_dir, dict(sorted(sizes.items())))
