"""The web server: micro-batched writing that does not depend on batch-mates, canvas mapping, the real HTTP API
(a uvicorn server on localhost) refusing bad input with one-line 400s while it stays up, and "learn my hand" (a
writer adapted in the background to lines drawn on the page, then written with)."""

import concurrent.futures
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import browser as browser_lib
import jax
import numpy as np
import pytest
import uvicorn
from flax import nnx

from configs import synthesis as synthesis_config
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.data.strokes import NormStats
from handwriting_jax.model import networks
from handwriting_jax.model import sampling as sample_lib
from handwriting_jax.serving import app as app_lib
from handwriting_jax.training import checkpoint as ckpt_lib
from handwriting_jax.training import optim
from handwriting_jax.training import step as step_lib
from handwriting_jax.writing import adaptation
from handwriting_jax.writing import writer as writer_lib

CHARS = " abcdefghijklmnopqrstuvwxyz"
STATS = NormStats(mean=np.zeros(2, np.float32), std=np.array([4.0, 3.0], np.float32))
ADAPT_STEPS = 3  # "learn my hand" in the tests: the plumbing, not the learning


@pytest.fixture(scope="module")
def service(tmp_path_factory):
  """A Service over a tiny random synthesis checkpoint with one saved style."""
  workdir = str(tmp_path_factory.mktemp("serve"))
  config = synthesis_config.get_config("tiny")
  config.sample.max_steps_per_char = 3  # short lines: the tests are about the plumbing
  alphabet = Alphabet(CHARS)
  _, state = step_lib.create_train_state(
    networks.create_model(config, alphabet.size), optim.make_optimizer(config.optim, config.train.num_steps)
  )
  ckpt = ckpt_lib.Checkpointer(workdir)
  ckpt.save(
    1,
    state,
    {"config": json.loads(config.to_json_best_effort()), "alphabet": alphabet.chars, "norm": STATS.to_arrays()},
  )
  ckpt.close()
  rng = np.random.default_rng(0)
  style = np.concatenate([rng.normal(size=(40, 2)) * 4, (rng.random((40, 1)) < 0.15)], axis=1).astype(np.float32)
  style[-1, 2] = 1
  os.makedirs(os.path.join(workdir, writer_lib.STYLES_DIR))
  writer_lib.save_style(os.path.join(workdir, writer_lib.STYLES_DIR, "style_0.npz"), style, "ab cd")
  svc = app_lib.Service(writer_lib.load_writer(workdir), wait_s=0.3, adapt_steps=ADAPT_STEPS)
  yield svc
  svc.batched.close()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(service):
  """A real uvicorn server on localhost; yields its base URL."""
  port = _free_port()
  srv = uvicorn.Server(uvicorn.Config(app_lib.make_app(service), host="127.0.0.1", port=port, log_level="error"))
  thread = threading.Thread(target=srv.run, daemon=True)
  thread.start()
  deadline = time.time() + 30
  while not srv.started and time.time() < deadline:
    time.sleep(0.05)
  assert srv.started
  yield f"http://127.0.0.1:{port}"
  srv.should_exit = True
  thread.join(timeout=10)


def _post(url: str, data: bytes) -> tuple[int, dict]:
  req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
  try:
    with urllib.request.urlopen(req, timeout=120) as r:
      return r.status, json.loads(r.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def _get(url: str) -> tuple[int, bytes]:
  with urllib.request.urlopen(url, timeout=30) as r:
    return r.status, r.read()


def _get_json(url: str) -> tuple[int, dict]:
  try:
    with urllib.request.urlopen(url, timeout=30) as r:
      return r.status, json.loads(r.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def _canvas_line(phase: float = 0.0) -> list:
  """A hand-written line as the page sends it: a wavy stroke and a short down stroke, in canvas pixels."""
  return [[[10 + 3 * i, 40 + 20 * np.sin(i / 3 + phase)] for i in range(40)], [[150, 30], [160, 60]]]


def _params(writer: writer_lib.Writer) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(writer.model, nnx.Param))]


def _wait_learnt(server: str, hand: str, timeout_s: float = 180) -> list[dict]:
  """Poll GET /api/adapt/ID every 0.2 s until the hand is no longer running; every answer, in order."""
  seen, deadline = [], time.time() + timeout_s
  while time.time() < deadline:
    status, progress = _get_json(f"{server}/api/adapt/{hand}")
    assert status == 200, progress
    seen.append(progress)
    if progress["state"] != "running":
      return seen
    time.sleep(0.2)
  pytest.fail(f"hand {hand} still learning after {timeout_s} s: {seen[-1]}")


# ---------------------------------------------------------------------------------------------------------------
# Batching.


def test_a_result_does_not_depend_on_what_shared_its_batch(service):
  alone = service.write({"text": "hello there", "seed": 5, "bias": 0.5})
  calls = service.batched.calls
  bodies = [
    {"text": "hello there", "seed": 5, "bias": 0.5},
    {"text": "a different text", "seed": 1},
    {"text": "more", "seed": 5, "bias": 2.0},
  ]
  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    results = list(pool.map(service.write, bodies))
  assert service.batched.calls == calls + 1  # the three requests went in one sampler call
  assert results[0]["lines"] == alone["lines"]  # bitwise the same strokes
  assert results[1]["lines"] != alone["lines"]
  styled = service.write({"text": "hello there", "seed": 5, "bias": 0.5, "style": "style_0"})
  assert styled["lines"] != alone["lines"]


def test_lines_wrap_and_each_line_is_written(service):
  out = service.write({"text": "word " * 20, "seed": 0})
  assert len(out["texts"]) == len(writer_lib.wrap_text(" ".join(["word"] * 20), app_lib.LINE_WIDTH)) > 1
  assert len(out["lines"]) == len(out["texts"]) and out["svg"].count('<g id="line-') == len(out["texts"])


def test_canvas_strokes_map_to_training_units():
  scale = app_lib.HandScale(line_height=100.0, point_step=5.0)
  # A 50 px tall stroke drawn downwards, sampled every pixel, and a dot.
  stroke = [[10.0, 10.0 + i] for i in range(51)]
  offsets = app_lib.canvas_to_offsets([stroke, [[60.0, 20.0]], [[70.0, 10.0], [90.0, 60.0]]], scale)
  pts = strokes_lib.offsets_to_points(offsets)
  parts = strokes_lib.points_to_strokes(pts)
  assert len(parts) == 3 and len(parts[1]) == 1
  first = parts[0]
  assert first[-1, 1] < first[0, 1]  # drawn down the screen: y goes down in training units (y up)
  np.testing.assert_allclose(np.ptp(pts[:, 1]), 100.0, rtol=1e-5)  # the line height of the training data
  np.testing.assert_allclose(np.linalg.norm(np.diff(first, axis=0), axis=1), 5.0, rtol=1e-5)  # its point spacing


@pytest.mark.parametrize(
  "strokes, message",
  [
    ([], "non-empty list"),
    ([[[1, 2]], "x"], r"strokes\[1\]"),
    ([[[0, 0], [float("nan"), 1]]], "non-finite"),
    ([[[0, 0], [1e9, 1]]], "absurd"),
    ([[[0, 0], [1, 1]]], "too small"),
    ([[[0, 0], [1, 1]] * 3000], "at most"),
  ],
)
def test_bad_canvas_strokes_are_named(strokes, message):
  with pytest.raises(app_lib.RequestError, match=message):
    app_lib.canvas_to_offsets(strokes, app_lib.HandScale(100.0, 5.0))


# ---------------------------------------------------------------------------------------------------------------
# HTTP.


def test_page_health_and_styles(server):
  status, page = _get(server + "/")
  assert status == 200 and b'id="canvas"' in page and b"/api/write" in page
  assert b"http://" not in page and b"https://" not in page  # no external assets: works offline
  status, module = _get(server + "/inkpad.js")  # the drawing canvas, shared with the static site
  assert status == 200 and b"export function inkPad" in module
  status, css = _get(server + "/page.css")  # the look, shared with the static site
  assert status == 200 and b"#canvas" in css and b'href="/page.css"' in page
  status, health = _get(server + "/healthz")
  assert status == 200 and json.loads(health)["ok"] is True
  assert json.loads(_get(server + "/api/styles")[1])["styles"] == ["style_0"]


def test_write_over_http_with_a_hand_written_prime(server):
  hand = [[[10 + 3 * i, 40 + 20 * np.sin(i / 3)] for i in range(40)], [[150, 30], [160, 60]]]
  status, out = _post(
    server + "/api/write",
    json.dumps({"text": "ab ba", "seed": 3, "prime": {"strokes": hand, "text": "hi there"}}).encode(),
  )
  assert status == 200, out
  assert out["svg"].startswith("<?xml") and "<path" in out["svg"] and len(out["lines"]) == 1


@pytest.mark.parametrize(
  "body, message",
  [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"text": ""}', "non-empty"),
    (json.dumps({"text": "x" * 401}).encode(), "at most 400"),
    (json.dumps({"text": "hello WORLD 42"}).encode(), "cannot write"),
    (json.dumps({"text": "ab", "bias": -1}).encode(), "bias must be in"),
    (json.dumps({"text": "ab", "bias": "high"}).encode(), "bias must be a number"),
    (json.dumps({"text": "ab", "seed": 1.5}).encode(), "seed must be an integer"),
    (json.dumps({"text": "ab", "seed": -3}).encode(), "seed must be in"),
    (b'{"text": "ab", "seed": 1' + b"0" * 400 + b"}", "seed must be in"),  # an int no float holds
    (b'{"text": "ab", "bias": 1' + b"0" * 400 + b"}", "bias must be in"),
    (b'{"text": "ab", "bias": 1e400}', "bias must be a number"),  # parsed as inf
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (json.dumps({"text": "ab", "style": "nope"}).encode(), "no style 'nope'"),
    (json.dumps({"text": "ab", "style": "style_0", "prime": {}}).encode(), "not both"),
    (b'{"text": "ab", "prime": {"strokes": [[[0, 0], [NaN, 1]]], "text": "ab"}}', "non-finite"),
    (b'{"text": "ab", "prime": {"strokes": [[[0, 1' + b"0" * 400 + b'], [5, 1]]], "text": "ab"}}', "not a list of"),
    (json.dumps({"text": "ab", "prime": {"strokes": [[[0, 0], [50, 50]]], "text": ""}}).encode(), "prime.text"),
    (
      json.dumps({"text": "ab", "prime": {"strokes": [[[0, 0], [50, 50]]], "text": "h\u00e9"}}).encode(),
      "the style's text (what its line says) holds characters this model cannot write: 'é'",
    ),
  ],
)
def test_bad_requests_are_one_line_400s_and_the_server_stays_up(server, body, message):
  status, out = _post(server + "/api/write", body)
  assert status == 400 and message in out["error"] and "\n" not in out["error"], out
  assert _get(server + "/healthz")[0] == 200


# ---------------------------------------------------------------------------------------------------------------
# Learning a hand.

_LINE = {"strokes": _canvas_line(), "text": "hi there"}


@pytest.mark.parametrize(
  "body, message",
  [
    (b"[1]", "JSON object"),
    (b"{}", "lines must be a non-empty list"),
    (b'{"lines": []}', "non-empty list"),
    (json.dumps({"lines": [_LINE] * 6}).encode(), "6 lines given; learning a hand takes 1 to 5"),
    (json.dumps({"lines": ["hi"]}).encode(), "line 1 must be an object"),
    (json.dumps({"lines": [_LINE, {"strokes": "x", "text": "ab"}]}).encode(), "line 2: strokes must be a non-empty"),
    (b'{"lines": [{"strokes": [[[0, 0], [NaN, 1]]], "text": "ab"}]}', "line 1: strokes[0] holds non-finite"),
    (
      json.dumps({"lines": [_LINE, _LINE, {"strokes": [[[0, 0], [1, 1]]], "text": "ab"}]}).encode(),
      "line 3: the hand-written line is too small",
    ),
    (json.dumps({"lines": [_LINE, {"strokes": _canvas_line(), "text": " "}]}).encode(), "line 2: its text must say"),
    (
      json.dumps({"lines": [_LINE, {"strokes": _canvas_line(), "text": "Hi 42"}]}).encode(),
      "line 2 ('Hi 42'): the text holds characters this model cannot write",
    ),
  ],
)
def test_bad_adapt_requests_are_one_line_400s_naming_the_line(server, service, body, message):
  status, out = _post(server + "/api/adapt", body)
  assert status == 400 and message in out["error"] and "\n" not in out["error"], out
  assert not any(h.state == "running" for h in service._hands.values())
  assert _get(server + "/healthz")[0] == 200


def test_unknown_hands_are_refused_with_a_message(server):
  status, out = _get_json(server + "/api/adapt/nope")
  assert status == 404 and "no hand 'nope'" in out["error"], out
  for hand, message in (("nope", "no hand 'nope' here: learn it first"), (7, "hand must be the ID")):
    status, out = _post(server + "/api/write", json.dumps({"text": "ab", "hand": hand}).encode())
    assert status == 400 and message in out["error"] and "\n" not in out["error"], out


def test_a_learnt_hand_writes_with_its_own_parameters_and_the_base_writer_is_unchanged(server, service):
  base_params = _params(service.writer)
  prime = {"strokes": _canvas_line(), "text": "hi there"}
  free_before = _post(server + "/api/write", json.dumps({"text": "ab ba", "seed": 4}).encode())
  primed_before = _post(server + "/api/write", json.dumps({"text": "ab ba", "seed": 4, "prime": prime}).encode())
  assert free_before[0] == primed_before[0] == 200

  lines = [prime, {"strokes": _canvas_line(1.0), "text": "ab cd"}]
  status, started = _post(server + "/api/adapt", json.dumps({"lines": lines}).encode())
  assert status == 200 and started["steps"] == ADAPT_STEPS and started["lines"] == 2, started
  hand = started["hand"]
  seen = _wait_learnt(server, hand)
  done = seen[-1]
  assert done["state"] == "done" and done["step"] == done["steps"] == ADAPT_STEPS, seen
  assert done["eta_s"] == 0 and np.isfinite(done["nll"]) and "error" not in done, done
  assert all(p["state"] == "running" and 0 <= p["step"] <= ADAPT_STEPS for p in seen[:-1]), seen

  adapted = _params(service.hand_writer(hand))
  assert [x.shape for x in adapted] == [x.shape for x in base_params]
  assert any(not np.array_equal(a, b) for a, b in zip(adapted, base_params))  # it learnt something
  assert all(np.array_equal(a, b) for a, b in zip(_params(service.writer), base_params))  # the base is untouched

  # With the hand: its own first line primes it, or the prime given; different strokes from the base writer's, from
  # the sampler compiled for the base writer (the same shapes: no new compile).
  compiled = sample_lib._sample_scan._cache_size()
  status, mine = _post(server + "/api/write", json.dumps({"text": "ab ba", "seed": 4, "hand": hand}).encode())
  assert status == 200 and mine["hand"] == hand and len(mine["lines"]) == 1 and "<path" in mine["svg"], mine
  assert sample_lib._sample_scan._cache_size() == compiled
  status, mine_primed = _post(
    server + "/api/write", json.dumps({"text": "ab ba", "seed": 4, "prime": prime, "hand": hand}).encode()
  )
  assert status == 200 and mine_primed["lines"] != primed_before[1]["lines"]
  status, styled = _post(
    server + "/api/write", json.dumps({"text": "ab ba", "seed": 4, "style": "style_0", "hand": hand}).encode()
  )
  assert status == 200 and styled["hand"] == hand
  # Without it: the base writer, bitwise as before.
  for body, before in (
    ({"text": "ab ba", "seed": 4}, free_before),
    ({"text": "ab ba", "seed": 4, "prime": prime}, primed_before),
  ):
    status, after = _post(server + "/api/write", json.dumps(body).encode())
    assert status == 200 and after["hand"] is None and after["lines"] == before[1]["lines"]


def test_lines_of_different_hands_never_share_a_sampler_call(service):
  calls = service.batched.calls
  writer = service.writer
  futures = [
    service.batched.submit(["ab"], 0.5, 1, None, ""),
    service.batched.submit(["ab"], 0.5, 1, None, "", writer=writer, writer_key="other"),
    service.batched.submit(["cd"], 0.5, 2, None, ""),
  ]
  first, other, third = (f.result(timeout=120) for f in futures)
  assert service.batched.calls == calls + 2  # the base writer's two requests together, the other hand's alone
  np.testing.assert_array_equal(first[0], other[0])  # the same network under another key: the same strokes
  assert third[0].shape != first[0].shape or not np.array_equal(third[0], first[0])


class _HeldAdapt:
  """A stand-in for `adaptation.adapt` that reports step 1, then waits to be let go (or fails when told to)."""

  def __init__(self, fail: bool = False):
    self.go, self.fail, self.calls = threading.Event(), fail, 0

  def __call__(self, writer, lines, *, steps, progress):
    self.calls += 1
    progress(1, steps, 12.5)
    assert self.go.wait(60)
    if self.fail:
      raise adaptation.AdaptError("the lines are too short to learn from")
    return writer, None


def test_one_hand_is_learnt_at_a_time_failures_are_reported_and_old_hands_are_forgotten(service, monkeypatch):
  svc = app_lib.Service(service.writer, wait_s=0.01, adapt_steps=5)
  try:
    held = _HeldAdapt()
    monkeypatch.setattr(app_lib.adaptation, "adapt", held)
    first = svc.start_adapt({"lines": [_LINE]})["hand"]
    deadline = time.time() + 30
    while svc.adapt_progress(first)["step"] < 1 and time.time() < deadline:
      time.sleep(0.01)
    progress = svc.adapt_progress(first)
    assert progress["state"] == "running" and progress["step"] == 1 and progress["steps"] == 5, progress
    assert progress["nll"] == 12.5 and progress["eta_s"] is None  # no step timed yet after the compiling one
    with pytest.raises(app_lib.BusyError, match="a hand is being learnt already"):
      svc.start_adapt({"lines": [_LINE]})
    with pytest.raises(app_lib.RequestError, match="still being learnt"):
      svc.write({"text": "ab", "hand": first})
    held.go.set()
    while svc.adapt_progress(first)["state"] == "running" and time.time() < deadline:
      time.sleep(0.01)
    assert svc.adapt_progress(first)["state"] == "done"

    failing = _HeldAdapt(fail=True)
    failing.go.set()
    monkeypatch.setattr(app_lib.adaptation, "adapt", failing)
    bad = svc.start_adapt({"lines": [_LINE]})["hand"]
    while svc.adapt_progress(bad)["state"] == "running" and time.time() < deadline:
      time.sleep(0.01)
    progress = svc.adapt_progress(bad)
    assert progress["state"] == "failed" and progress["error"] == "the lines are too short to learn from", progress
    with pytest.raises(app_lib.RequestError, match="was not learnt"):
      svc.write({"text": "ab", "hand": bad})

    monkeypatch.setattr(app_lib.adaptation, "adapt", held)  # let go already: each learns at once
    later = []
    for _ in range(app_lib.MAX_HANDS - 1):
      later.append(svc.start_adapt({"lines": [_LINE]})["hand"])
      while svc.adapt_progress(later[-1])["state"] == "running" and time.time() < deadline:
        time.sleep(0.01)
    with pytest.raises(app_lib.NoHandError, match=f"older than the last {app_lib.MAX_HANDS}"):
      svc.adapt_progress(first)  # the oldest of MAX_HANDS + 1 is forgotten
    with pytest.raises(app_lib.RequestError, match="no hand"):
      svc.write({"text": "ab", "hand": first})
    assert svc.adapt_progress(bad)["state"] == "failed" and svc.adapt_progress(later[-1])["state"] == "done"
  finally:
    svc.batched.close()


# ---------------------------------------------------------------------------------------------------------------
# The page in a real browser: headless Chromium (Debian chromium + chromium-driver, installed by .ci/run).


def _chromium(tmp_path):
  """A headless Chromium driven by Debian's chromedriver, with a fresh profile; fails (never skips) without it."""
  try:
    return browser_lib.headless_chromium(str(tmp_path / "profile"))
  except browser_lib.NoBrowserError as e:
    pytest.fail(str(e))


def _draw_line(browser, canvas, wave: int = 12) -> None:
  """Draw a wavy stroke and a short down stroke across the left of the canvas, with the mouse."""
  from selenium.webdriver.common.action_chains import ActionChains

  pen = ActionChains(browser).move_to_element_with_offset(canvas, -400, 0).click_and_hold()
  for i in range(30):
    pen.move_by_offset(6, int(wave * np.sin(i / 2)) - int(wave * np.sin((i - 1) / 2)))
  pen.release().move_by_offset(20, -10).click_and_hold().move_by_offset(3, 25).release().perform()


def test_the_page_writes_typed_text_and_then_in_a_hand_drawn_on_its_canvas(server, service, tmp_path):
  """Type text, press write, wait for the animated SVG; then draw a prime on the canvas, say what it reads, write
  again in that hand; add that line, draw another, learn the hand, write in it, forget it; no error shown, no
  console error, downloads offered, a screenshot saved."""
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support import expected_conditions as ec
  from selenium.webdriver.support.ui import Select, WebDriverWait

  browser = _chromium(tmp_path)
  try:
    wait = WebDriverWait(browser, 120)
    browser.get(server + "/")
    wait.until(lambda b: len(Select(b.find_element(By.ID, "style")).options) == 3)  # style_0, free, my hand
    text = browser.find_element(By.ID, "text")
    text.clear()
    text.send_keys("ab cd")
    browser.find_element(By.ID, "write").click()
    first = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#written path")))
    assert browser.find_element(By.ID, "error").text == ""
    assert browser.find_element(By.ID, "dlsvg").is_displayed()

    Select(browser.find_element(By.ID, "style")).select_by_value("__hand__")
    canvas = browser.find_element(By.ID, "canvas")
    assert canvas.is_displayed()
    _draw_line(browser, canvas)
    assert browser.execute_script("return servePage.strokes.length") == 2
    assert browser.execute_script("return servePage.strokes[0].length") >= 20
    browser.find_element(By.ID, "handtext").send_keys("hi there")
    browser.find_element(By.ID, "write").click()
    wait.until(ec.staleness_of(first))
    primed = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#written path")))
    assert browser.find_element(By.ID, "error").text == ""

    # Learn the hand from two lines: the one drawn (added to the list), and another one left on the canvas.
    browser.find_element(By.ID, "addline").click()
    assert browser.execute_script("return [servePage.handLines.length, servePage.strokes.length]") == [1, 0]
    assert browser.find_element(By.ID, "handlines").text.startswith("hi there")
    _draw_line(browser, canvas, wave=8)
    browser.find_element(By.ID, "handtext").send_keys("ab cd")
    assert not browser.find_element(By.ID, "handnote").is_displayed()
    browser.find_element(By.ID, "learn").click()
    wait.until(lambda b: b.find_element(By.ID, "handnote").is_displayed() or b.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text == ""
    assert browser.find_element(By.ID, "learnmsg").text.startswith("learnt your hand in")
    hand = browser.execute_script("return servePage.hand")
    progress = service.adapt_progress(hand)
    assert progress["state"] == "done" and progress["lines"] == 2, progress
    assert browser.execute_script("return servePage.handLines.length") == 2
    browser.find_element(By.ID, "write").click()
    wait.until(ec.staleness_of(primed))
    learnt = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#written path")))
    assert browser.find_element(By.ID, "error").text == ""
    assert browser.find_element(By.ID, "handnote").text.startswith("writing in your learnt hand")
    assert browser.save_screenshot(str(tmp_path / "page.png"))

    browser.find_element(By.ID, "forget").click()  # back to the base writer, primed with the first line
    assert browser.execute_script("return servePage.hand") is None
    assert not browser.find_element(By.ID, "handnote").is_displayed()
    browser.find_element(By.ID, "write").click()
    wait.until(ec.staleness_of(learnt))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#written path")))
    assert browser.find_element(By.ID, "error").text == ""
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    assert (tmp_path / "page.png").stat().st_size > 5000
  finally:
    browser.quit()
