"""The static site (`export_web`): the ONNX step against the JAX step (onnxruntime), and the exported site served by a
plain static file server in headless Chromium: same step outputs as the JAX writer for the same uniform draws,
drawn ink in the same units as in Python, writing, priming from a drawn line, downloads, errors.

onnxruntime-web comes from its npm package, fetched once by `npm pack` into ~/.cache (npm: .ci/run installs it).
"""

import gzip
import json
import math
import os
import subprocess
import sys

import browser as browser_lib
import jax
import ml_collections
import numpy as np
import onnxruntime as ort
import pytest

from configs import synthesis
from handwriting_jax.data import end_of_text
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.model import networks
from handwriting_jax.model import sampling as sample_lib
from handwriting_jax.serving import web_export
from handwriting_jax.writing import writer as writer_lib

TOLERANCE = 1e-4  # step outputs of the browser against the JAX step


@pytest.fixture(scope="module")
def writer():
  return writer_lib.load_writer()


@pytest.fixture(scope="module")
def site(writer, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("site"))
  return web_export.build_site(writer, out)


@pytest.fixture(scope="module")
def site_url(site):
  """The site served by `python -m http.server` on loopback, as any static host would."""
  with browser_lib.static_server(site.out_dir) as url:
    yield url


@pytest.fixture(scope="module")
def page(site_url, tmp_path_factory):
  """Headless Chromium on the site's page, its network loaded; fails (never skips) without Chromium."""
  try:
    driver = browser_lib.headless_chromium(str(tmp_path_factory.mktemp("profile")))
  except browser_lib.NoBrowserError as e:
    pytest.fail(str(e))
  try:
    driver.set_script_timeout(120)
    driver.get(site_url + "/")
    _run(driver, "return window.handwritingPage.ready.then(() => 'ok')")
    yield driver
  finally:
    driver.quit()


_run = browser_lib.run_async  # async JavaScript in the page, its value


def _meta(site) -> dict:
  """The site's model.json."""
  with open(os.path.join(site.out_dir, "model.json")) as f:
    return json.load(f)


def _severe(driver) -> list:
  return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


# ---------------------------------------------------------------------------------------------------------------
# The reference: the JAX step driven by the page's loop, in Python.


def _draw_point(log_pi, mu, log_sigma, rho, eos_logit, u) -> np.ndarray:
  """The page's mixture draw from four uniforms (handwriting.js drawPoint), in float64."""
  cdf = np.cumsum(np.exp(np.asarray(log_pi, np.float64)))
  j = int(np.argmax(u[0] < cdf)) if (u[0] < cdf).any() else len(cdf) - 1
  r = math.sqrt(-2 * math.log(1 - u[1]))
  n1, n2 = r * math.cos(2 * math.pi * u[2]), r * math.sin(2 * math.pi * u[2])
  s1, s2, p = math.exp(log_sigma[j, 0]), math.exp(log_sigma[j, 1]), float(rho[j])
  x1 = mu[j, 0] + s1 * n1
  x2 = mu[j, 1] + s2 * (p * n1 + math.sqrt(max(1 - p * p, 0)) * n2)
  eos = 1.0 if u[3] < 1 / (1 + math.exp(-float(eos_logit))) else 0.0
  return np.array([x1, x2, eos])


def _reference_line(step, meta: dict, text: str, bias: float, prime: dict | None, uniforms: np.ndarray) -> list[dict]:
  """Every step of one line sampled with `step` (the JAX step function or an onnxruntime session) and the page's
  uniform draws: the writer's own stop rule (sampling.window_finished, sampling.line_end) and priming."""
  alphabet = meta["alphabet"]
  prime_obj = None if prime is None else sample_lib.Prime(None, prime["text"])
  full = sample_lib.conditioning_texts([text], prime_obj, Alphabet(alphabet))[0]
  read = end_of_text.conditioned(full, Alphabet(alphabet))  # with the end symbol when the writer has one
  chars = np.zeros((1, meta["max_chars"]), np.int32)
  chars[0, : len(read)] = [alphabet.index(c) + 2 for c in read]
  lh = (meta["num_layers"], 1, meta["hidden"])
  state = (
    np.zeros((1, meta["num_window_gaussians"]), np.float32),
    np.zeros((1, meta["alphabet_size"]), np.float32),
    np.zeros(lh, np.float32),
    np.zeros(lh, np.float32),
  )
  bias_1 = np.array([bias], np.float32)
  x = np.asarray(meta["start_point"], np.float32)
  if prime is not None:
    offsets = np.asarray(prime["offsets"], np.float32)
    for inp in [x, *offsets[:-1]]:
      state = tuple(np.asarray(a) for a in step(inp[None].astype(np.float32), chars, bias_1, *state)[6:])
    x = offsets[-1]
  cap = max(1, math.ceil(meta["max_steps_per_char"] * len(text)))
  trace, passed, k, track = [], False, 0, sample_lib.start_track(1)
  for t in range(cap):
    out = [np.asarray(a) for a in step(np.asarray(x, np.float32)[None], chars, bias_1, *state)]
    log_pi, mu, log_sigma, rho, eos_logit, phi = (a[0] for a in out[:6])
    state = tuple(out[6:])
    passed = passed or bool(sample_lib.window_finished(phi[None], np.array([len(full)]))[0])
    point = _draw_point(log_pi, mu, log_sigma, rho, eos_logit, uniforms[k : k + 4])
    k += 4
    *ends, track = sample_lib.line_end(
      meta["stop_rule"], np.array([passed]), point[None], np.array([x[2]]), np.array([False]),
      np.array([t + 1 >= cap]), t == 0, track, phi[len(full) - 1 : len(full)], meta["std"][0], meta["mean"][0],
    )  # fmt: skip
    valid, ends_now, _, eos = (bool(np.asarray(v)[0]) for v in ends)
    point[2] = float(eos)
    trace.append({"logPi": log_pi, "mu": mu, "logSigma": log_sigma, "rho": rho, "eosLogit": eos_logit, "phi": phi,
                  "point": point, "valid": valid})  # fmt: skip
    x = point
    if ends_now:
      break
  return trace


def _jax_step(model, meta: dict | None = None):
  """The JAX step function of `model`, jitted; of the network a site runs when given its `meta` (float16 weights)."""
  if meta is not None and meta["weight_dtype"] == "float16":
    model = web_export.half_rounded(model)
  fn, _ = web_export.step_function(model)
  return jax.jit(fn)


def _session_step(path: str):
  session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
  names = [i.name for i in session.get_inputs()]
  return lambda *args: session.run(None, dict(zip(names, args)))


def _compare(trace_a: list[dict], trace_b: list[dict], tolerance: float) -> float:
  """The largest difference between two traces' step outputs (π, μ, log σ, ρ, eos logit, φ) and points;
  AssertionError if their lengths or kept points differ."""
  assert len(trace_a) == len(trace_b), (len(trace_a), len(trace_b))
  worst = 0.0
  for a, b in zip(trace_a, trace_b):
    assert a["valid"] == b["valid"]
    for key in ("logPi", "mu", "logSigma", "rho", "eosLogit", "phi", "point"):
      va, vb = np.asarray(a[key], np.float64).ravel(), np.asarray(b[key], np.float64).ravel()
      if key == "logPi":  # the weights π themselves (eq. 19): log π of a component no draw can pick reaches -20,
        va, vb = np.exp(va), np.exp(vb)  # where float32 holds 1e-4 only relatively
      assert va.shape == vb.shape, key
      diff = float(np.max(np.abs(va - vb)))
      if diff > worst:
        worst, where = diff, (key, float(np.max(np.abs(vb))))
  assert worst < tolerance, (worst, where)
  return worst


# ---------------------------------------------------------------------------------------------------------------
# Python: the exported step.


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_the_exported_step_equals_the_jax_step_of_a_random_network(tmp_path, compute_dtype):
  """A freshly initialised tiny network, exported: onnxruntime's outputs equal the JAX step's on random states and
  a partly padded text, over several chained steps (the state fed back); one trained with bf16 matmuls loads and
  runs in float32, as the page does."""
  cfg = synthesis.get_config("tiny")
  cfg.model.compute_dtype = compute_dtype
  model = networks.create_model(cfg, 9)
  path = str(tmp_path / "step.onnx")
  web_export.export_onnx(model, path, max_chars=12)
  onnx_step, (fn, _) = _session_step(path), web_export.step_function(model, max_chars=12)
  rng = np.random.default_rng(0)
  chars = np.zeros((1, 12), np.int32)
  chars[0, :7] = rng.integers(2, 9, 7)
  state = [rng.normal(size=s).astype(np.float32) * 0.5 for s in ((1, 2), (1, 9), (2, 1, 16), (2, 1, 16))]
  state[0] = np.abs(state[0])
  state_onnx = list(state)
  for _ in range(5):
    x = rng.normal(size=(1, 3)).astype(np.float32)
    bias = np.array([rng.uniform(0, 2)], np.float32)
    ref = [np.asarray(a) for a in jax.jit(fn)(x, chars, bias, *state)]
    got = onnx_step(x, chars, bias, *state_onnx)
    for r, g in zip(ref, got):
      np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-5)
    state, state_onnx = ref[6:], list(got[6:])
  assert float(np.abs(ref[5]).max()) > 0  # the window saw the text


def test_half_precision_weights_run_the_half_rounded_network_in_half_the_bytes(tmp_path):
  """Stored in float16, the exported step equals the JAX step of `half_rounded` (not of the float32 network, which
  differs by more), and the file is about half the size."""
  cfg = synthesis.get_config("tiny")
  cfg.model.hidden_size = 96  # weights outweigh the graph
  model = networks.create_model(cfg, 9)
  paths = {dtype: str(tmp_path / f"{dtype}.onnx") for dtype in web_export.WEIGHT_DTYPES}
  for dtype, path in paths.items():
    web_export.export_onnx(model, path, max_chars=12, weight_dtype=dtype)
  assert os.path.getsize(paths["float16"]) < 0.6 * os.path.getsize(paths["float32"])
  rng = np.random.default_rng(1)
  chars = np.zeros((1, 12), np.int32)
  chars[0, :5] = rng.integers(2, 9, 5)
  args = (rng.normal(size=(1, 3)).astype(np.float32), chars, np.array([0.5], np.float32),
          np.ones((1, 2), np.float32), np.zeros((1, 9), np.float32),
          rng.normal(size=(2, 1, 96)).astype(np.float32), rng.normal(size=(2, 1, 96)).astype(np.float32))  # fmt: skip
  got = _session_step(paths["float16"])(*args)
  half = [np.asarray(a) for a in jax.jit(web_export.step_function(web_export.half_rounded(model), 12)[0])(*args)]
  full = [np.asarray(a) for a in jax.jit(web_export.step_function(model, 12)[0])(*args)]
  for g, h in zip(got, half):
    np.testing.assert_allclose(g, h, atol=1e-5, rtol=1e-5)
  assert max(float(np.abs(g - f).max()) for g, f in zip(got, full)) > 1e-4
  with pytest.raises(web_export.ExportError, match="float16"):
    web_export.export_onnx(model, paths["float16"], weight_dtype="int8")


def test_the_step_function_is_the_writers_sampler(writer):
  """Fed the points the Python writer sampled, the exported step function reproduces the mixture it drew them from,
  step by step: what the page runs is the writer, not a copy (in float32 arithmetic, as the page)."""
  samples = sample_lib.sample(
    web_export.float32_network(writer.model),
    jax.random.key(3),
    texts=["jax ink"],
    **writer_lib.sample_kwargs(writer, 0.5),
  )
  step = _jax_step(writer.model)
  meta = web_export.site_metadata(writer)
  alphabet = meta["alphabet"]
  read = end_of_text.conditioned("jax ink", writer.alphabet)  # and the end symbol, for a writer trained with it
  chars = np.zeros((1, meta["max_chars"]), np.int32)
  chars[0, : len(read)] = [alphabet.index(c) + 2 for c in read]
  lh = (meta["num_layers"], 1, meta["hidden"])
  state = (np.zeros((1, meta["num_window_gaussians"]), np.float32), np.zeros((1, meta["alphabet_size"]), np.float32),
           np.zeros(lh, np.float32), np.zeros(lh, np.float32))  # fmt: skip
  x, n = np.asarray(sample_lib.START_POINT, np.float32), int(samples.lengths_B[0])
  assert n > 20
  for t in range(n):
    out = step(x[None], chars, np.array([0.5], np.float32), *state)
    state = tuple(out[6:])
    np.testing.assert_allclose(out[0][0], samples.mixture.log_pi[0, t], atol=1e-5)
    np.testing.assert_allclose(out[2][0], samples.mixture.log_sigma[0, t], atol=1e-5)
    np.testing.assert_allclose(out[4][0], samples.mixture.eos_logit[0, t], atol=1e-5)
    x = samples.strokes_BxTx3[0, t]


def test_onnxruntime_writes_the_same_line_as_the_jax_step(writer, site):
  """The site's model.onnx run by onnxruntime, and the JAX step, through the page's loop with the same uniform draws,
  unprimed and primed with the writer's first style: the same steps, outputs within 1e-4."""
  meta = _meta(site)
  onnx_step, jax_step = _session_step(os.path.join(site.out_dir, "model.onnx")), _jax_step(writer.model, meta)
  uniforms = np.random.default_rng(1).random(4 * 400)
  for prime in (None, meta["styles"][0]):
    ref = _reference_line(jax_step, meta, "hello there", 0.75, prime, uniforms)
    got = _reference_line(onnx_step, meta, "hello there", 0.75, prime, uniforms)
    assert 20 < len(ref) < 400
    _compare(got, ref, TOLERANCE)


def test_the_site_holds_what_the_page_loads_and_stays_small(site, writer):
  """Every file the page loads, the WebAssembly binary intact (gzipped), the metadata matching the writer, and the
  whole site under 8 MB."""
  for name in (*web_export.PAGE_FILES, "model.onnx", "model.json", "ort/ort.wasm.min.mjs",
               "ort/ort-wasm-simd-threaded.mjs", "ort/ort-wasm-simd-threaded.wasm.gz"):  # fmt: skip
    assert os.path.getsize(os.path.join(site.out_dir, name)) > 0, name
  with gzip.open(os.path.join(site.out_dir, "ort/ort-wasm-simd-threaded.wasm.gz")) as f:
    assert f.read(4) == b"\0asm"
  meta = _meta(site)
  assert meta["alphabet"] == writer.alphabet.chars
  assert meta["std"] == [float(v) for v in writer.stats.std]
  assert meta["max_steps_per_char"] == writer.config.sample.max_steps_per_char
  assert len(meta["styles"]) == len(writer_lib.style_names(writer.workdir)) > 0
  assert site.total_bytes < 8e6, site.sizes


def test_export_web_refuses_bad_output_folders_and_a_prediction_writer(tmp_path, writer):
  """A file as --out, a folder of other files, an --ort_dir without onnxruntime-web, a prediction network: one error
  each, nothing written."""
  (tmp_path / "file").write_text("x")
  other = tmp_path / "other"
  other.mkdir()
  (other / "keep.txt").write_text("mine")
  for out, match in ((tmp_path / "file", "is a file"), (other, "other files")):
    with pytest.raises(web_export.ExportError, match=match):
      web_export.build_site(writer, str(out))
  assert (other / "keep.txt").read_text() == "mine"
  with pytest.raises(web_export.ExportError, match="holds no onnxruntime-web"):
    web_export.build_site(writer, str(tmp_path / "new"), ort_dir=str(other))
  cfg = ml_collections.ConfigDict(synthesis.get_config("tiny").to_dict())
  cfg.model.mode = "prediction"
  scribbler = writer_lib.Writer(networks.create_model(cfg, 9), cfg, writer.alphabet, writer.stats, 0, str(tmp_path))
  with pytest.raises(web_export.ExportError, match="prediction network"):
    web_export.build_site(scribbler, str(tmp_path / "new"))
  assert not (tmp_path / "new").exists()


def test_export_web_command_builds_a_site(tmp_path, site):
  """The command line: the shipped writer by default, the cached onnxruntime-web; lists the files and the size."""
  out = tmp_path / "site"
  done = subprocess.run(
    [sys.executable, "-m", "handwriting_jax.export_web", f"--out={out}"], capture_output=True, text=True, check=False
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert "model.onnx" in done.stdout and "serve it with python -m http.server" in done.stdout
  assert sorted(os.listdir(out)) == sorted(os.listdir(site.out_dir))
  bad = subprocess.run(
    [sys.executable, "-m", "handwriting_jax.export_web", f"--out={out / 'index.html'}"],
    capture_output=True,
    text=True,
    check=False,
  )
  assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: --out="), bad.stderr[-500:]


# ---------------------------------------------------------------------------------------------------------------
# The page in headless Chromium.


def test_the_browser_samples_the_same_line_as_the_jax_step(page, writer, site):
  """The page's worker (onnxruntime-web) and the JAX step, with the same uniform draws fed to both, unprimed and
  primed: the same number of steps, mixture parameters, window and points within 1e-4."""
  meta = _meta(site)
  jax_step = _jax_step(writer.model, meta)
  uniforms = np.random.default_rng(2).random(4 * 400)
  for prime in (None, meta["styles"][1]):
    ref = _reference_line(jax_step, meta, "write 42 lines", 0.75, prime, uniforms)
    js = _run(page, "return window.handwritingPage.trace(args[0], args[1], args[2], args[3])",
              "write 42 lines", 0.75, prime, uniforms.tolist())  # fmt: skip
    assert len(ref) > 20
    _compare(js["steps"], ref, TOLERANCE)


@pytest.mark.parametrize("stop_rule", sample_lib.STOP_RULES)
def test_the_page_ends_lines_by_the_python_stop_rule(page, stop_rule):
  """handwriting.js's lineEnd equals sampling.line_end step by step, the pen track carried along, over random lines
  whose window passes the text part-way (strokes begun over and right of the ink, before and after the window's
  peak on the last character, caps, first steps)."""
  rng = np.random.default_rng(5)
  for _ in range(12):
    steps = 60
    passed_at, peak_at = int(rng.integers(0, steps)), int(rng.integers(0, steps))
    points = np.stack([rng.normal(0.3, 1.5, steps), rng.normal(0, 1, steps), rng.random(steps) < 0.3], axis=-1)
    points = points.astype(np.float32)
    phi_last = np.exp(-0.5 * ((np.arange(steps) - peak_at) / 6.0) ** 2).astype(np.float32)
    track, prev_eos, ref = sample_lib.start_track(1), 1.0, []
    for t in range(steps):
      *ends, track = sample_lib.line_end(
        stop_rule, np.array([t >= passed_at]), points[t][None], np.array([prev_eos]), np.array([False]),
        np.array([t + 1 >= steps]), t == 0, track, phi_last[t : t + 1], 2.0, 0.25,
      )  # fmt: skip
      valid, ends_now, stopped, eos = (bool(np.asarray(v)[0]) if i < 3 else float(v[0]) for i, v in enumerate(ends))
      ref.append([valid, ends_now, stopped, eos])
      prev_eos = eos
      if ends_now:
        break
    got = _run(page, """
      const [rule, passedAt, points, phiLast] = args, hw = window.handwritingPage.hw, out = [];
      let track = hw.startTrack(), prevEos = 1;
      for (let t = 0; t < points.length; t++) {
        const e = hw.lineEnd(rule, t >= passedAt, points[t].slice(), prevEos, false, t + 1 >= points.length, t === 0,
          track, phiLast[t], 2.0, 0.25);
        track = e.track; prevEos = e.eos;
        out.push([e.valid, e.endsNow, e.stopped, e.eos]);
        if (e.endsNow) break;
      }
      return out;""", stop_rule, passed_at, points.tolist(), phi_last.tolist())  # fmt: skip
    assert got == ref


def test_the_page_reads_the_end_symbol_as_the_python_sampler_does(page):
  """handwriting.js's window ids equal end_of_text.conditioned + Alphabet.encode, for a writer with the end symbol and
  one without; the symbol is not a character a user may write."""
  for chars in (" abc" + end_of_text.END_CHAR, " abc"):
    alphabet = Alphabet(chars)
    got = _run(page, "return window.handwritingPage.hw.windowIds(args[0], args[1])", "cab a", chars)
    assert got == alphabet.encode(end_of_text.conditioned("cab a", alphabet)).tolist()
  got = _run(page, "return window.handwritingPage.hw.unknownChars(args[0], args[1])", "ab\x03z", " abc\x03")
  assert got == [end_of_text.END_CHAR, "z"]


def test_drawn_ink_reaches_the_network_in_the_same_units_as_in_python(page, writer):
  """The page's conversion of drawn strokes (handwriting.js) equals strokes.strokes_to_training_units: repeated
  points, a one-point stroke (a dot) and a long wavy stroke."""
  rng = np.random.default_rng(5)
  wave = np.stack([np.linspace(0, 300, 80), 20 * np.sin(np.linspace(0, 9, 80))], 1)
  wave[10] = wave[9]  # the pointer reported the same place twice
  strokes = [wave, np.array([[320.0, 30.0]]), rng.normal(size=(12, 2)).cumsum(0) * 5 + [350, 0]]
  scale = writer_lib.hand_scale(writer)
  expected = strokes_lib.strokes_to_training_units(strokes, scale.line_height, scale.point_step)
  got = _run(page, "return window.handwritingPage.hw.strokesToTrainingUnits(args[0], args[1], args[2])",
             [s.tolist() for s in strokes], scale.line_height, scale.point_step)  # fmt: skip
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4)


def test_the_static_page_writes_primes_from_a_drawn_line_and_offers_downloads(page):
  """Type, press write: the ink appears as SVG paths; draw a line on the canvas, say what it says, write in that
  hand; both downloads hold an SVG and a PNG; a character the writer cannot write is a one-line error on the page;
  no console error."""
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import Select, WebDriverWait

  wait = WebDriverWait(page, 60)
  by_id = lambda name: page.find_element(By.ID, name)
  text = by_id("text")
  text.clear()
  text.send_keys("a quick brown fox")
  by_id("write").click()
  wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("wrote"))
  assert by_id("error").text == ""
  wait.until(lambda d: d.find_element(By.ID, "dlpng").is_displayed())  # the pen has drawn it all
  assert len(page.find_elements(By.CSS_SELECTOR, "#written path")) > 5
  svg = _run(page, "return fetch(document.getElementById('dlsvg').href).then((r) => r.text())")
  assert svg.startswith("<svg") and svg.count("<path") > 5
  png = _run(page, "return fetch(document.getElementById('dlpng').href).then((r) => r.blob())"
                   ".then((b) => [b.type, b.size])")  # fmt: skip
  assert png[0] == "image/png" and png[1] > 2000, png

  Select(by_id("style")).select_by_value("hand")
  canvas = by_id("canvas")
  pen = ActionChains(page).move_to_element_with_offset(canvas, -400, 0).click_and_hold()
  for i in range(40):
    pen.move_by_offset(6, int(14 * np.sin(i / 2)) - int(14 * np.sin((i - 1) / 2)))
  pen.release().move_by_offset(20, -10).click_and_hold().move_by_offset(3, 25).release().perform()
  by_id("handtext").send_keys("my own hand")
  prime = _run(page, "return window.handwritingPage.handPrime()")
  assert prime["text"] == "my own hand" and len(prime["offsets"]) > 10
  page.execute_script("document.getElementById('status').textContent = ''")
  by_id("write").click()
  wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("wrote") or d.find_element(By.ID, "error").text)
  assert by_id("error").text == ""
  wait.until(lambda d: d.find_element(By.ID, "dlsvg").is_displayed())
  assert len(page.find_elements(By.CSS_SELECTOR, "#written path")) > 5
  primed = _run(page, "return fetch(document.getElementById('dlsvg').href).then((r) => r.text())")
  assert primed.startswith("<svg") and primed != svg  # the download follows the page, now in the drawn hand

  Select(by_id("style")).select_by_value("")
  text.clear()
  text.send_keys("price: 5€")
  by_id("write").click()
  wait.until(lambda d: d.find_element(By.ID, "error").text)
  assert by_id("error").text == 'the writer cannot write "€"'
  assert not _severe(page)


def test_a_forty_character_line_is_written_whole_unprimed_and_primed(page, site):
  """A 40-character line, unprimed and primed with a style: one line, written to its end, with the time it took
  (what experiments/web_speed.py measures)."""
  meta = _meta(site)
  line = "the quick brown fox jumps over a lazy dog"[:40]
  for prime in (None, meta["styles"][0]):
    res = _run(page, "return window.handwritingPage.write(args[0], {bias: 0.75, seed: 1, prime: args[1]})", line, prime)
    assert res["lines"] == [line] and res["steps"][0] > 100 and res["firstLineMs"] > 0, res
