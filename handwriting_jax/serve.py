"""A local web page and JSON API to write with: `python -m handwriting_jax.serve [--workdir=DIR] [--port=8000]`.

Without --workdir the default shipped writer is used. The page (no external assets: it works offline) has a text
box, bias and seed controls, a style picker (the writer's own styles) and "my hand": a canvas to write a line on,
with what it says, which primes the model (section 5.4). The API:

  POST /api/write  {"text": str, "bias": 0.75, "seed": 0, "style": NAME | null,
                    "prime": {"strokes": [[[x, y], ...], ...], "text": str} | null}
                   -> {"lines": [[[dx, dy, eos], ...], ...], "svg": str, "step": int}
  GET  /api/styles -> {"styles": [...], "alphabet": str}
  GET  /healthz    -> {"ok": true, ...}

Requests that arrive together are written in one batched sampler call (`BatchedWriter`): lines with the same prime
and text-length bucket share a call, padded to a fixed batch and text size, and every line draws from a key of its
own request (the request's seed, the line's index), so a result depends only on its own text, style and seed.
Bad input is a 4xx with a one-line message; the server stays up.
"""

import asyncio
import concurrent.futures
import dataclasses
import json
import math
import os
import queue
import threading
import time
from collections.abc import Sequence

import jax
import numpy as np
from absl import flags, logging

from handwriting_jax import cli, draw
from handwriting_jax import sample as sample_lib
from handwriting_jax import writer as writer_lib
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.errors import UserError

MAX_TEXT = 400  # characters per request
LINE_WIDTH = 40  # characters per written line (wrapped at spaces)
MAX_BIAS = 10.0
MAX_SEED = 2**31 - 1
MAX_PRIME_POINTS = 5000
MAX_PRIME_TEXT = 80
CHAR_BUCKETS = (16, 32, 48, 64, 96, 128)  # padded text lengths (prime text included): a few compiled samplers
BATCH_LINES = 16  # lines per sampler call, padded
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serve_page.html")


class RequestError(UserError, ValueError):
  """A request the server refuses with 400 and this one-line message."""


# ---------------------------------------------------------------------------------------------------------------
# Canvas strokes -> training units.


# What a line of the writer's training data looks like (moved to the writer library, which `write` shares).
HandScale = writer_lib.HandScale
hand_scale = writer_lib.hand_scale


def canvas_to_offsets(strokes_px: Sequence[Sequence[Sequence[float]]], scale: HandScale) -> np.ndarray:
  """Canvas strokes (pixels, y down, at the browser's event rate) -> raw offsets `[T, 3]` in training units: y
  flipped, scaled to the training line height, resampled along each stroke at the training point spacing
  (`strokes_lib.strokes_to_training_units`, as ink files are in `write`)."""
  if not isinstance(strokes_px, list) or not strokes_px:
    raise RequestError("prime.strokes must be a non-empty list of strokes, each a list of [x, y] points")
  arrays = []
  for i, s in enumerate(strokes_px):
    try:
      a = np.asarray(s, np.float64)
    except (TypeError, ValueError):
      raise RequestError(f"prime.strokes[{i}] is not a list of [x, y] numbers") from None
    if a.ndim != 2 or a.shape[1] != 2 or len(a) == 0:
      raise RequestError(f"prime.strokes[{i}] is not a list of [x, y] points")
    if not np.all(np.isfinite(a)) or np.any(np.abs(a) > 1e5):
      raise RequestError(f"prime.strokes[{i}] holds non-finite or absurd coordinates")
    arrays.append(a * np.array([1.0, -1.0]))
  total = sum(len(a) for a in arrays)
  if total > MAX_PRIME_POINTS:
    raise RequestError(f"prime.strokes has {total} points; at most {MAX_PRIME_POINTS}")
  allpts = np.concatenate(arrays)
  if float(np.ptp(allpts[:, 1])) < 5.0 or float(np.ptp(allpts[:, 0])) < 10.0:
    raise RequestError("the hand-written prime is too small: write a whole line of a few words")
  return strokes_lib.strokes_to_training_units(arrays, scale.line_height, scale.point_step)


# ---------------------------------------------------------------------------------------------------------------
# Micro-batching.


@dataclasses.dataclass
class _Job:
  lines: list[str]
  bias: float
  seed: int
  prime: sample_lib.Prime | None
  prime_key: str  # requests with the same prime (the same style, or no prime) may share a call
  bucket: int
  future: concurrent.futures.Future


def char_bucket(lines: Sequence[str], prime: sample_lib.Prime | None) -> int:
  """The padded text length of a call writing `lines` (primed: prime text, a space, the line)."""
  need = max(len(t) for t in lines) + (len(prime.text) + 1 if prime is not None else 0)
  for b in CHAR_BUCKETS:
    if need <= b:
      return b
  raise RequestError(f"a line of {need} characters (with the prime's text) is longer than the "
                     f"{CHAR_BUCKETS[-1]} this server writes")


class BatchedWriter:
  """Writes requests in batched sampler calls on one worker thread, gathering those that arrive within `wait_s`."""

  def __init__(self, writer: writer_lib.Writer, wait_s: float = 0.02, batch_lines: int = BATCH_LINES):
    self.writer = writer
    self.wait_s = wait_s
    self.batch_lines = batch_lines
    self.calls = 0  # sampler calls made (for tests and the load check)
    self._queue: queue.Queue[_Job | None] = queue.Queue()
    self._thread = threading.Thread(target=self._run, name="batched-writer", daemon=True)
    self._thread.start()

  def submit(self, lines: list[str], bias: float, seed: int, prime: sample_lib.Prime | None, prime_key: str
             ) -> concurrent.futures.Future:
    """Queue `lines` (each at most LINE_WIDTH-ish characters); the future gives their raw offset lines."""
    if len(lines) > self.batch_lines:
      raise RequestError(f"the text wraps into {len(lines)} lines; at most {self.batch_lines} per request")
    job = _Job(lines, bias, seed, prime, prime_key, char_bucket(lines, prime), concurrent.futures.Future())
    self._queue.put(job)
    return job.future

  def close(self) -> None:
    """Stop the worker after the queued jobs."""
    self._queue.put(None)
    self._thread.join(timeout=30)

  def _run(self) -> None:
    pending: list[_Job] = []
    while True:
      job = self._queue.get()
      if job is None:
        return
      pending.append(job)
      deadline = time.monotonic() + self.wait_s
      while (left := deadline - time.monotonic()) > 0:
        try:
          more = self._queue.get(timeout=left)
        except queue.Empty:
          break
        if more is None:
          self._queue.put(None)
          break
        pending.append(more)
      while pending:
        group, rest, used = [], [], 0
        head = pending[0]
        for j in pending:
          if (j.prime_key, j.bucket) == (head.prime_key, head.bucket) and used + len(j.lines) <= self.batch_lines:
            group.append(j)
            used += len(j.lines)
          else:
            rest.append(j)
        pending = rest
        self._write(group)

  def _write(self, group: list[_Job]) -> None:
    """One sampler call for `group` (same prime and bucket), padded to `batch_lines` lines."""
    try:
      pad = self.batch_lines - sum(len(j.lines) for j in group)  # padding lines, written and dropped
      texts = [t for j in group for t in j.lines] + [group[0].lines[0]] * pad
      bias = [j.bias for j in group for _ in j.lines] + [group[0].bias] * pad
      keys_B = jax.numpy.concatenate([jax.random.split(jax.random.key(j.seed), len(j.lines)) for j in group]
                                     + [jax.random.split(jax.random.key(0), pad)])
      head, w = group[0], self.writer
      kw = {**writer_lib.sample_kwargs(w, np.asarray(bias)), "num_chars": head.bucket,
            "num_steps": math.ceil(w.config.sample.max_steps_per_char * head.bucket)}
      if head.prime is None:
        samples = sample_lib.sample(w.model, keys_B, texts=texts, **kw)
      else:
        samples = writer_lib.primed_samples(w, keys_B, texts, head.prime, kw)
      self.calls += 1
      at, shown = 0, sample_lib.display_lines(samples.lines, w.config)
      for j in group:
        j.future.set_result(shown[at:at + len(j.lines)])
        at += len(j.lines)
    except Exception as e:  # pylint: disable=broad-except  # handed to the requests, which report it
      for j in group:
        if not j.future.done():
          j.future.set_exception(e)


# ---------------------------------------------------------------------------------------------------------------
# Requests.


def _number(body: dict, name: str, default: float, lo: float, hi: float, integer: bool = False) -> float:
  value = body.get(name, default)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise RequestError(f"{name} must be a number, got {value!r}")
  if integer and int(value) != value:
    raise RequestError(f"{name} must be an integer, got {value!r}")
  if not lo <= value <= hi:
    raise RequestError(f"{name} must be in [{lo:g}, {hi:g}], got {value!r}")
  return int(value) if integer else float(value)


class Service:
  """The writer, its styles and the batched sampler behind the HTTP routes (usable without a server)."""

  def __init__(self, writer: writer_lib.Writer, wait_s: float = 0.02):
    self.writer = writer
    self.styles = writer_lib.style_names(writer.workdir)
    self.scale = hand_scale(writer)
    self.batched = BatchedWriter(writer, wait_s=wait_s)

  def info(self) -> dict:
    """What /healthz and /api/styles report."""
    return {"styles": self.styles, "alphabet": self.writer.alphabet.chars, "step": self.writer.step,
            "workdir": self.writer.workdir, "line_width": LINE_WIDTH, "max_text": MAX_TEXT}

  def parse(self, body) -> tuple[list[str], float, int, sample_lib.Prime | None, str]:
    """Check a /api/write body; (lines, bias, seed, prime, prime key) or a RequestError."""
    if not isinstance(body, dict):
      raise RequestError("the body must be a JSON object")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
      raise RequestError("text must be a non-empty string")
    text = " ".join(text.split())
    if len(text) > MAX_TEXT:
      raise RequestError(f"text has {len(text)} characters; at most {MAX_TEXT}")
    sample_lib.check_texts([text], self.writer.alphabet)  # unknown characters, listed
    bias = _number(body, "bias", 0.75, 0.0, MAX_BIAS)
    seed = _number(body, "seed", 0, 0, MAX_SEED, integer=True)
    style, prime_body = body.get("style"), body.get("prime")
    if style is not None and prime_body is not None:
      raise RequestError("give a style or a prime, not both")
    prime, key = None, ""
    if style is not None:
      if style not in self.styles:
        raise RequestError(f"no style {style!r}; this writer has {', '.join(self.styles) or 'none'}")
      prime, key = writer_lib.make_prime(self.writer, *writer_lib.writer_style(self.writer, style)), f"style:{style}"
    elif prime_body is not None:
      if not isinstance(prime_body, dict):
        raise RequestError("prime must be an object {strokes, text}")
      prime_text = prime_body.get("text")
      if not isinstance(prime_text, str) or not prime_text.strip() or len(prime_text) > MAX_PRIME_TEXT:
        raise RequestError(f"prime.text must say what the hand-written line says (1 to {MAX_PRIME_TEXT} characters)")
      offsets = canvas_to_offsets(prime_body.get("strokes"), self.scale)
      prime = writer_lib.make_prime(self.writer, offsets, " ".join(prime_text.split()))
      key = f"prime:{hash((offsets.tobytes(), prime.text))}"
    return writer_lib.wrap_text(text, LINE_WIDTH), bias, seed, prime, key

  def write(self, body) -> dict:
    """Answer one /api/write body (blocking): the lines in raw units and an SVG page."""
    lines, bias, seed, prime, key = self.parse(body)
    written = self.batched.submit(lines, bias, seed, prime, key).result(timeout=300)
    return {"lines": [np.round(x, 3).tolist() for x in written], "texts": lines,
            "svg": draw.lines_to_svg(written), "step": self.writer.step}


def make_app(service: Service):
  """The Starlette app: the page, the API and the health check."""
  from starlette.applications import Starlette  # pylint: disable=g-import-not-at-top  # the optional `serve` extra
  from starlette.responses import HTMLResponse, JSONResponse
  from starlette.routing import Route

  with open(PAGE, encoding="utf-8") as f:
    page = f.read()

  async def index(request):
    del request
    return HTMLResponse(page)

  async def healthz(request):
    del request
    return JSONResponse({"ok": True, **service.info()})

  async def styles(request):
    del request
    return JSONResponse(service.info())

  async def write(request):
    try:
      raw = await request.body()
      if len(raw) > 1 << 20:
        raise RequestError("the request body is over 1 MB")
      try:
        body = json.loads(raw)
      except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"the body is not JSON ({e})") from None
      return JSONResponse(await asyncio.get_running_loop().run_in_executor(None, service.write, body))
    except UserError as e:
      return JSONResponse({"error": " ".join(str(e).split())}, status_code=400)
    except Exception as e:  # pylint: disable=broad-except  # a bug: one line to the client, the trace to the log
      logging.exception("write failed")
      return JSONResponse({"error": f"internal error: {type(e).__name__}: {e}"}, status_code=500)

  return Starlette(routes=[Route("/", index), Route("/healthz", healthz), Route("/api/styles", styles),
                           Route("/api/write", write, methods=["POST"])])


def define_flags() -> None:
  """The command-line flags (defined only when run as a program)."""
  flags.DEFINE_string("workdir", None, "Training workdir (default: a shipped writer, --shipped).")
  flags.DEFINE_string("shipped", None, f"Without --workdir: one of {', '.join(writer_lib.SHIPPED)}.")
  flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (127.0.0.1: this machine only).")
  flags.DEFINE_integer("port", 8000, "Port to listen on.")
  flags.DEFINE_float("batch_wait", 0.02, "Seconds to gather concurrent requests into one sampler call.")


def main(argv) -> None:
  """Load the writer, warm the sampler up, serve until Ctrl-C."""
  del argv
  logging.set_verbosity(logging.WARNING)
  try:
    import uvicorn  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit("error: the server needs the serve extra: pip install -e '.[serve]'") from None
  try:
    writer = writer_lib.load_writer(writer_lib.resolve_workdir(flags.FLAGS.workdir, flags.FLAGS.shipped))
    if not writer.conditional:
      raise UserError(f"{writer.workdir} holds a prediction network; the page needs a synthesis network")
    service = Service(writer, wait_s=flags.FLAGS.batch_wait)
  except (UserError, FileNotFoundError) as e:
    raise SystemExit(f"error: {e}") from None
  print(f"writer {writer.workdir} step {writer.step}; open http://{flags.FLAGS.host}:{flags.FLAGS.port}/",
        flush=True)
  uvicorn.run(make_app(service), host=flags.FLAGS.host, port=flags.FLAGS.port, log_level="warning")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
