"""A local web page and JSON API to write with: `python -m handwriting_jax.serve [--workdir=DIR] [--port=8000]`.

Without --workdir the default shipped writer is used. The page (no external assets: it works offline) has a text
box, bias and seed controls, a style picker (the writer's own styles) and "my hand": a canvas to write a line on,
with what it says, which primes the model (section 5.4); "learn my hand" fine-tunes a copy of the writer on up to
`MAX_ADAPT_LINES` such lines (`adaptation.adapt`) and writes with it from then on. The API:

  POST /api/write  {"text": str, "bias": 0.75, "seed": 0, "style": NAME | null,
                    "prime": {"strokes": [[[x, y], ...], ...], "text": str} | null, "hand": ID | null}
                   -> {"lines": [[[dx, dy, eos], ...], ...], "svg": str, "step": int, "hand": ID | null}
  POST /api/adapt  {"lines": [{"strokes": [[[x, y], ...], ...], "text": str}, ...]}  (1 to MAX_ADAPT_LINES)
                   -> {"hand": ID, "steps": int}; the learning runs in the background
  GET  /api/adapt/ID -> {"state": "running" | "done" | "failed", "step", "steps", "nll", "eta_s", "error"?}
  GET  /api/styles -> {"styles": [...], "alphabet": str}
  GET  /healthz    -> {"ok": true, ...}

A learnt hand writes with the adapted network, primed with its first line unless the request gives a prime or a
style. One hand is learnt at a time: a second POST /api/adapt while one runs is refused with 409 (the page waits for
the first); the last `MAX_HANDS` learnt hands are kept in memory, older ones are forgotten (a write naming one is a
400 saying so). Requests that arrive together are written in one batched sampler call (`BatchedWriter`): lines of
the same writer (the base one or one hand), prime and text-length bucket share a call, padded to a fixed batch and
text size, and every line draws from a key of its own request (the request's seed, the line's index), so a result
depends only on its own text, style, hand and seed. Bad input is a 4xx with a one-line message; the server stays up.
"""

import asyncio
import collections
import concurrent.futures
import dataclasses
import json
import math
import os
import queue
import secrets
import threading
import time
from collections.abc import Sequence

import jax
import numpy as np
from absl import logging
from flax import nnx

from handwriting_jax.data import draw, end_of_text
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.errors import UserError
from handwriting_jax.model import sampling as sample_lib
from handwriting_jax.writing import adaptation
from handwriting_jax.writing import writer as writer_lib

MAX_TEXT = 400  # characters per request
LINE_WIDTH = 40  # characters per written line (wrapped at spaces)
MAX_BIAS = 10.0
MAX_SEED = 2**31 - 1
MAX_PRIME_POINTS = 5000
MAX_PRIME_TEXT = 80
CHAR_BUCKETS = (16, 32, 48, 64, 96, 128)  # padded text lengths (prime text included): a few compiled samplers
BATCH_LINES = 16  # lines per sampler call, padded
MAX_ADAPT_LINES = 5  # lines of one hand "learn my hand" takes
MAX_HANDS = 4  # learnt hands kept in memory (the oldest is forgotten first)
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")
WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
INK_PAD = os.path.join(WEB_DIR, "inkpad.js")  # the drawing canvas, shared with the static site
PAGE_CSS = os.path.join(WEB_DIR, "page.css")  # the look, shared with the static site


class RequestError(UserError, ValueError):
  """A request the server refuses with 400 and this one-line message."""


class BusyError(UserError, RuntimeError):
  """A hand is being learnt already: the server refuses another with 409 until it is done."""


class NoHandError(UserError, LookupError):
  """GET /api/adapt/ID of a hand this server does not know (never learnt here, or forgotten): a 404."""


# ---------------------------------------------------------------------------------------------------------------
# Canvas strokes -> training units.


# What a line of the writer's training data looks like (moved to the writer library, which `write` shares).
HandScale = writer_lib.HandScale
hand_scale = writer_lib.hand_scale


def canvas_to_offsets(
  strokes_px: Sequence[Sequence[Sequence[float]]],
  scale: HandScale,
  where: str = "prime.strokes",
  what: str = "the hand-written prime",
) -> np.ndarray:
  """Canvas strokes (pixels, y down, at the browser's event rate) -> raw offsets `[T, 3]` in training units: y
  flipped, scaled to the training line height, resampled along each stroke at the training point spacing
  (`strokes_lib.strokes_to_training_units`, as ink files are in `write`); errors name the strokes as `where`."""
  if not isinstance(strokes_px, list) or not strokes_px:
    raise RequestError(f"{where} must be a non-empty list of strokes, each a list of [x, y] points")
  arrays = []
  for i, s in enumerate(strokes_px):
    try:
      a = np.asarray(s, np.float64)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int of hundreds of digits (fuzz_inputs.py)
      raise RequestError(f"{where}[{i}] is not a list of [x, y] numbers") from None
    if a.ndim != 2 or a.shape[1] != 2 or len(a) == 0:
      raise RequestError(f"{where}[{i}] is not a list of [x, y] points")
    if not np.all(np.isfinite(a)) or np.any(np.abs(a) > 1e5):
      raise RequestError(f"{where}[{i}] holds non-finite or absurd coordinates")
    arrays.append(a * np.array([1.0, -1.0]))
  total = sum(len(a) for a in arrays)
  if total > MAX_PRIME_POINTS:
    raise RequestError(f"{where} has {total} points; at most {MAX_PRIME_POINTS}")
  allpts = np.concatenate(arrays)
  if float(np.ptp(allpts[:, 1])) < 5.0 or float(np.ptp(allpts[:, 0])) < 10.0:
    raise RequestError(f"{what} is too small: write a whole line of a few words")
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
  writer: writer_lib.Writer  # the network to write with: the base writer or a learnt hand's
  writer_key: str = ""  # "" for the base writer, the hand's ID for a learnt one: only one writer per call


def char_bucket(lines: Sequence[str], prime: sample_lib.Prime | None) -> int:
  """The padded text length of a call writing `lines` (primed: prime text, a space, the line)."""
  need = max(len(t) for t in lines) + (len(prime.text) + 1 if prime is not None else 0)
  for b in CHAR_BUCKETS:
    if need <= b:
      return b
  raise RequestError(
    f"a line of {need} characters (with the prime's text) is longer than the {CHAR_BUCKETS[-1]} this server writes"
  )


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

  def submit(
    self,
    lines: list[str],
    bias: float,
    seed: int,
    prime: sample_lib.Prime | None,
    prime_key: str,
    writer: writer_lib.Writer | None = None,
    writer_key: str = "",
  ) -> concurrent.futures.Future:
    """Queue `lines` (each at most LINE_WIDTH-ish characters) for `writer` (default the base one; another one, a
    learnt hand, needs its own `writer_key`); the future gives their raw offset lines."""
    if len(lines) > self.batch_lines:
      raise RequestError(f"the text wraps into {len(lines)} lines; at most {self.batch_lines} per request")
    if (writer is None) != (writer_key == ""):
      raise ValueError("give a writer together with its writer_key, or neither (the base writer)")
    job = _Job(
      lines,
      bias,
      seed,
      prime,
      prime_key,
      char_bucket(lines, prime),
      concurrent.futures.Future(),
      self.writer if writer is None else writer,
      writer_key,
    )
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
          if (j.writer_key, j.prime_key, j.bucket) == (head.writer_key, head.prime_key, head.bucket) and (
            used + len(j.lines) <= self.batch_lines
          ):
            group.append(j)
            used += len(j.lines)
          else:
            rest.append(j)
        pending = rest
        self._write(group)

  def _write(self, group: list[_Job]) -> None:
    """One sampler call for `group` (same writer, prime and bucket), padded to `batch_lines` lines."""
    try:
      pad = self.batch_lines - sum(len(j.lines) for j in group)  # padding lines, written and dropped
      texts = [t for j in group for t in j.lines] + [group[0].lines[0]] * pad
      bias = [j.bias for j in group for _ in j.lines] + [group[0].bias] * pad
      keys_B = jax.numpy.concatenate(
        [jax.random.split(jax.random.key(j.seed), len(j.lines)) for j in group]
        + [jax.random.split(jax.random.key(0), pad)]
      )
      head = group[0]
      w = head.writer
      kw = {
        **writer_lib.sample_kwargs(w, np.asarray(bias)),
        "num_chars": head.bucket,
        "num_steps": math.ceil(w.config.sample.max_steps_per_char * head.bucket),
      }
      if head.prime is None:
        samples = sample_lib.sample(w.model, keys_B, texts=texts, **kw)
      else:
        samples = writer_lib.primed_samples(w, keys_B, texts, head.prime, kw)
      self.calls += 1
      at, shown = 0, sample_lib.display_lines(samples.lines, w.config)
      for j in group:
        j.future.set_result(shown[at : at + len(j.lines)])
        at += len(j.lines)
    except Exception as e:  # noqa: BLE001  handed to the requests, which report it
      for j in group:
        if not j.future.done():
          j.future.set_exception(e)


# ---------------------------------------------------------------------------------------------------------------
# Requests.


def _number(body: dict, name: str, default: float, lo: float, hi: float, integer: bool = False) -> float:
  value = body.get(name, default)
  shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}... ({len(repr(value))} characters)"
  if (
    isinstance(value, bool)
    or not isinstance(value, (int, float))
    or (isinstance(value, float) and not math.isfinite(value))
  ):
    raise RequestError(f"{name} must be a number, got {shown}")
  if not lo <= value <= hi:  # exact for ints of any size (JSON allows 400 digits), before any float conversion
    raise RequestError(f"{name} must be in [{lo:g}, {hi:g}], got {shown}")
  if integer and int(value) != value:
    raise RequestError(f"{name} must be an integer, got {shown}")
  return int(value) if integer else float(value)


@dataclasses.dataclass
class _Hand:
  """A hand being learnt or learnt: its lines, its progress and, once done, its adapted writer and default prime."""

  id: str
  lines: list[adaptation.Line]
  steps: int
  state: str = "running"  # "running" | "done" | "failed"
  step: int = 0  # optimiser steps done
  nll: float | None = None  # NLL per line before the last step's update
  started: float = dataclasses.field(default_factory=time.monotonic)
  first_step_at: float | None = None  # when step 1 (which compiles) finished: the ETA counts from here
  last_step_at: float | None = None
  seconds: float | None = None  # wall time of the whole learning, when finished
  error: str | None = None
  writer: writer_lib.Writer | None = None
  prime: sample_lib.Prime | None = None  # its first line, the prime of a write that gives none

  def progress(self) -> dict:
    """What GET /api/adapt/ID answers: state, steps done and in all, NLL, seconds left (null while compiling)."""
    eta = None
    if self.state == "done":
      eta = 0.0
    elif self.state == "running" and self.step >= 2:
      per_step = (self.last_step_at - self.first_step_at) / (self.step - 1)
      eta = max(per_step * (self.steps - self.step) - (time.monotonic() - self.last_step_at), 0.0)
    out = {
      "hand": self.id,
      "state": self.state,
      "step": self.step,
      "steps": self.steps,
      "lines": len(self.lines),
      "nll": None if self.nll is None else round(self.nll, 2),
      "eta_s": None if eta is None else round(eta, 1),
      "elapsed_s": round((self.seconds if self.seconds is not None else time.monotonic() - self.started), 1),
    }
    if self.error is not None:
      out["error"] = self.error
    return out


def _place_like(adapted: writer_lib.Writer, base: writer_lib.Writer) -> None:
  """Put `adapted`'s parameters on the devices and sharding of `base`'s (`adapt` returns host arrays), so that
  writing with it reuses the sampler compiled for the base writer instead of compiling another."""
  placed = jax.tree.map(
    lambda x, b: jax.device_put(x, b.sharding) if isinstance(b, jax.Array) else x,
    nnx.state(adapted.model, nnx.Param),
    nnx.state(base.model, nnx.Param),
  )
  nnx.update(adapted.model, placed)


class Service:
  """The writer, its styles, the hands learnt from the page and the batched sampler behind the HTTP routes (usable
  without a server)."""

  def __init__(self, writer: writer_lib.Writer, wait_s: float = 0.02, adapt_steps: int = adaptation.DEFAULT_STEPS):
    if adapt_steps < 1:
      raise adaptation.AdaptError(f"--adapt_steps={adapt_steps}: learning a hand takes at least 1 step")
    self.writer = writer
    self.styles = writer_lib.style_names(writer.workdir)
    self.scale = hand_scale(writer)
    self.batched = BatchedWriter(writer, wait_s=wait_s)
    self.adapt_steps = adapt_steps
    self._hands: collections.OrderedDict[str, _Hand] = collections.OrderedDict()  # oldest first
    self._hands_lock = threading.Lock()

  def info(self) -> dict:
    """What /healthz and /api/styles report."""
    return {
      "styles": self.styles,
      "alphabet": end_of_text.written_chars(self.writer.alphabet),  # what a user may write
      "step": self.writer.step,
      "workdir": self.writer.workdir,
      "line_width": LINE_WIDTH,
      "max_text": MAX_TEXT,
      "max_adapt_lines": MAX_ADAPT_LINES,
      "adapt_steps": self.adapt_steps,
      "max_hands": MAX_HANDS,
    }

  def parse(self, body) -> tuple[list[str], float, int, sample_lib.Prime | None, str, _Hand | None]:
    """Check a /api/write body; (lines, bias, seed, prime, prime key, learnt hand or None) or a RequestError."""
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
    hand = self._learnt_hand(body.get("hand"))
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
    elif hand is not None:  # a learnt hand writes primed with its first line unless told otherwise
      prime, key = hand.prime, "hand"
    return writer_lib.wrap_text(text, LINE_WIDTH), bias, seed, prime, key, hand

  def write(self, body) -> dict:
    """Answer one /api/write body (blocking): the lines in raw units and an SVG page."""
    lines, bias, seed, prime, key, hand = self.parse(body)
    mine = {} if hand is None else {"writer": hand.writer, "writer_key": hand.id}
    written = self.batched.submit(lines, bias, seed, prime, key, **mine).result(timeout=300)
    return {
      "lines": [np.round(x, 3).tolist() for x in written],
      "texts": lines,
      "svg": draw.lines_to_svg(written),
      "step": self.writer.step,
      "hand": None if hand is None else hand.id,
    }

  # -------------------------------------------------------------------------------------------------------------
  # Learning a hand.

  def parse_adapt(self, body) -> list[adaptation.Line]:
    """Check a /api/adapt body; the lines as (raw offsets in the writer's units, text), or a RequestError naming
    the bad line (counted from 1, as the page lists them)."""
    if not isinstance(body, dict):
      raise RequestError("the body must be a JSON object")
    lines = body.get("lines")
    if not isinstance(lines, list) or not lines:
      raise RequestError(
        f"lines must be a non-empty list of hand-written lines {{strokes, text}} (1 to {MAX_ADAPT_LINES})"
      )
    if len(lines) > MAX_ADAPT_LINES:
      raise RequestError(f"{len(lines)} lines given; learning a hand takes 1 to {MAX_ADAPT_LINES}")
    out = []
    for i, line in enumerate(lines):
      name = f"line {i + 1}"
      if not isinstance(line, dict):
        raise RequestError(f"{name} must be an object {{strokes, text}}")
      text = line.get("text")
      if not isinstance(text, str) or not text.strip() or len(text) > MAX_PRIME_TEXT:
        raise RequestError(
          f"{name}: its text must say what the hand-written line says (1 to {MAX_PRIME_TEXT} characters)"
        )
      text = " ".join(text.split())
      offsets = canvas_to_offsets(
        line.get("strokes"), self.scale, where=f"{name}: strokes", what=f"{name}: the hand-written line"
      )
      if len(offsets) > writer_lib.MAX_STYLE_STEPS:
        raise RequestError(
          f"{name} makes {len(offsets)} points at the writer's scale; at most "
          f"{writer_lib.MAX_STYLE_STEPS}: write one line of a few words"
        )
      try:
        self.writer.alphabet.check_known([text])
      except UserError as e:
        raise RequestError(f"{name} ({text!r}): {e}") from None
      out.append((offsets, text))
    adaptation.check_lines(self.writer, out, max_lines=MAX_ADAPT_LINES)
    return out

  def start_adapt(self, body) -> dict:
    """Answer one /api/adapt body: check the lines, start learning them in the background, return the hand's ID;
    BusyError while another hand is being learnt."""
    lines = self.parse_adapt(body)
    with self._hands_lock:
      for other in self._hands.values():
        if other.state == "running":
          raise BusyError(
            f"a hand is being learnt already (step {other.step} of {other.steps}); try again when it is done"
          )
      hand = _Hand(secrets.token_hex(6), lines, self.adapt_steps)
      self._hands[hand.id] = hand
      while len(self._hands) > MAX_HANDS:  # the oldest go; the new one (the only one running) is the newest
        self._hands.popitem(last=False)
    threading.Thread(target=self._learn, args=(hand,), name=f"learn-hand-{hand.id}", daemon=True).start()
    return {"hand": hand.id, "steps": hand.steps, "lines": len(lines)}

  def adapt_progress(self, hand_id) -> dict:
    """Answer GET /api/adapt/ID: the hand's progress; NoHandError for an ID this server does not hold."""
    with self._hands_lock:
      hand = self._hands.get(hand_id) if isinstance(hand_id, str) else None
      if hand is None:
        raise NoHandError(
          f"no hand {hand_id!r} here: it was never learnt, or it is older than the last {MAX_HANDS} this server keeps"
        )
      return hand.progress()

  def hand_writer(self, hand_id: str) -> writer_lib.Writer:
    """The adapted writer of a learnt hand (RequestError when it is unknown, still learning or failed)."""
    return self._learnt_hand(hand_id).writer

  def _learnt_hand(self, hand_id) -> _Hand | None:
    """The learnt hand a /api/write body names (None for none), or a RequestError saying why it cannot write."""
    if hand_id is None:
      return None
    if not isinstance(hand_id, str):
      raise RequestError(f"hand must be the ID /api/adapt returned, got {hand_id!r}")
    with self._hands_lock:
      hand = self._hands.get(hand_id)
      if hand is None:
        raise RequestError(
          f"no hand {hand_id!r} here: learn it first (this server keeps the last {MAX_HANDS} learnt hands)"
        )
      if hand.state == "running":
        raise RequestError(
          f"hand {hand_id!r} is still being learnt (step {hand.step} of {hand.steps}); write with it when it is done"
        )
      if hand.state == "failed":
        raise RequestError(f"hand {hand_id!r} was not learnt ({hand.error}); learn it again")
      return hand

  def _learn(self, hand: _Hand) -> None:
    """The background thread of one hand: adapt a copy of the writer to its lines, reporting each step."""

    def progress(done: int, total: int, nll: float) -> None:
      del total
      now = time.monotonic()
      with self._hands_lock:
        hand.step, hand.nll, hand.last_step_at = done, nll, now
        if done == 1:
          hand.first_step_at = now

    try:
      adapted, _ = adaptation.adapt(self.writer, hand.lines, steps=hand.steps, progress=progress)
      _place_like(adapted, self.writer)
      prime = writer_lib.make_prime(adapted, *hand.lines[0])
      with self._hands_lock:
        hand.writer, hand.prime, hand.state = adapted, prime, "done"
        hand.seconds = time.monotonic() - hand.started
    except Exception as e:  # noqa: BLE001  # reported by GET /api/adapt/ID
      if isinstance(e, UserError):
        error = " ".join(str(e).split())
      else:
        logging.exception("learning hand %s failed", hand.id)
        error = f"internal error: {type(e).__name__}: {e}"
      with self._hands_lock:
        hand.state, hand.error = "failed", error
        hand.seconds = time.monotonic() - hand.started


def make_app(service: Service):
  """The Starlette app: the page, the API and the health check."""
  from starlette.applications import Starlette  # the optional `serve` extra
  from starlette.responses import JSONResponse, Response
  from starlette.routing import Route

  def static(path: str, media_type: str):
    """A handler answering with the file at `path`, read once now."""
    with open(path, encoding="utf-8") as f:
      body = f.read()

    async def handler(request):
      del request
      return Response(body, media_type=media_type)

    return handler

  async def healthz(request):
    del request
    return JSONResponse({"ok": True, **service.info()})

  async def styles(request):
    del request
    return JSONResponse(service.info())

  async def answer(what: str, fn, *args):
    """`fn(*args)` off the event loop as JSON: a user's mistake is a one-line 4xx, a bug a one-line 500."""
    try:
      return JSONResponse(await asyncio.get_running_loop().run_in_executor(None, fn, *args))
    except BusyError as e:
      return JSONResponse({"error": " ".join(str(e).split())}, status_code=409)
    except NoHandError as e:
      return JSONResponse({"error": " ".join(str(e).split())}, status_code=404)
    except UserError as e:
      return JSONResponse({"error": " ".join(str(e).split())}, status_code=400)
    except Exception as e:  # noqa: BLE001  a bug: one line to the client, the trace to the log
      logging.exception("%s failed", what)
      return JSONResponse({"error": " ".join(f"internal error: {type(e).__name__}: {e}".split())}, status_code=500)

  async def json_body(request, limit: int):
    """The request's JSON body (RequestError when it is too big or not JSON)."""
    raw = await request.body()
    if len(raw) > limit:
      raise RequestError(f"the request body is over {limit >> 20} MB")
    try:
      return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
      raise RequestError(f"the body is not JSON ({e})") from None
    except RecursionError:
      raise RequestError("the body's JSON is nested too deeply") from None

  async def write(request):
    try:
      body = await json_body(request, 1 << 20)
    except RequestError as e:
      return JSONResponse({"error": " ".join(str(e).split())}, status_code=400)
    return await answer("write", service.write, body)

  async def adapt(request):
    try:
      body = await json_body(request, 4 << 20)  # up to MAX_ADAPT_LINES lines of MAX_PRIME_POINTS points
    except RequestError as e:
      return JSONResponse({"error": " ".join(str(e).split())}, status_code=400)
    return await answer("adapt", service.start_adapt, body)

  async def adapt_progress(request):
    return await answer("adapt progress", service.adapt_progress, request.path_params["hand"])

  return Starlette(
    routes=[
      Route("/", static(PAGE, "text/html")),
      Route("/inkpad.js", static(INK_PAD, "text/javascript")),
      Route("/page.css", static(PAGE_CSS, "text/css")),
      Route("/healthz", healthz),
      Route("/api/styles", styles),
      Route("/api/write", write, methods=["POST"]),
      Route("/api/adapt", adapt, methods=["POST"]),
      Route("/api/adapt/{hand}", adapt_progress),
    ]
  )
