"""The web server: micro-batched writing that does not depend on batch-mates, canvas mapping, and the real HTTP API
(a uvicorn server on localhost) refusing bad input with one-line 400s while it stays up."""

import concurrent.futures
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import jax
import numpy as np
import pytest
import uvicorn

from configs import synthesis as synthesis_config
from handwriting_jax import checkpoint as ckpt_lib
from handwriting_jax import browser as browser_lib
from handwriting_jax import optim, serve
from handwriting_jax import step as step_lib
from handwriting_jax import writer as writer_lib
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.data.strokes import NormStats
from handwriting_jax.model import networks

CHARS = " abcdefghijklmnopqrstuvwxyz"
STATS = NormStats(mean=np.zeros(2, np.float32), std=np.array([4.0, 3.0], np.float32))


@pytest.fixture(scope="module")
def service(tmp_path_factory):
  """A Service over a tiny random synthesis checkpoint with one saved style."""
  workdir = str(tmp_path_factory.mktemp("serve"))
  config = synthesis_config.get_config("tiny")
  config.sample.max_steps_per_char = 3  # short lines: the tests are about the plumbing
  alphabet = Alphabet(CHARS)
  _, state = step_lib.create_train_state(networks.create_model(config, alphabet.size),
                                         optim.make_optimizer(config.optim, config.train.num_steps))
  ckpt = ckpt_lib.Checkpointer(workdir)
  ckpt.save(1, state, {"config": json.loads(config.to_json_best_effort()), "alphabet": alphabet.chars,
                       "norm": STATS.to_arrays()})
  ckpt.close()
  rng = np.random.default_rng(0)
  style = np.concatenate([rng.normal(size=(40, 2)) * 4, (rng.random((40, 1)) < 0.15)], axis=1).astype(np.float32)
  style[-1, 2] = 1
  os.makedirs(os.path.join(workdir, writer_lib.STYLES_DIR))
  writer_lib.save_style(os.path.join(workdir, writer_lib.STYLES_DIR, "style_0.npz"), style, "ab cd")
  svc = serve.Service(writer_lib.load_writer(workdir), wait_s=0.3)
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
  srv = uvicorn.Server(uvicorn.Config(serve.make_app(service), host="127.0.0.1", port=port, log_level="error"))
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


# ---------------------------------------------------------------------------------------------------------------
# Batching.


def test_a_result_does_not_depend_on_what_shared_its_batch(service):
  alone = service.write({"text": "hello there", "seed": 5, "bias": 0.5})
  calls = service.batched.calls
  bodies = [{"text": "hello there", "seed": 5, "bias": 0.5}, {"text": "a different text", "seed": 1},
            {"text": "more", "seed": 5, "bias": 2.0}]
  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    results = list(pool.map(service.write, bodies))
  assert service.batched.calls == calls + 1  # the three requests went in one sampler call
  assert results[0]["lines"] == alone["lines"]  # bitwise the same strokes
  assert results[1]["lines"] != alone["lines"]
  styled = service.write({"text": "hello there", "seed": 5, "bias": 0.5, "style": "style_0"})
  assert styled["lines"] != alone["lines"]


def test_lines_wrap_and_each_line_is_written(service):
  out = service.write({"text": "word " * 20, "seed": 0})
  assert len(out["texts"]) == len(writer_lib.wrap_text(" ".join(["word"] * 20), serve.LINE_WIDTH)) > 1
  assert len(out["lines"]) == len(out["texts"]) and out["svg"].count("<g id=\"line-") == len(out["texts"])


def test_canvas_strokes_map_to_training_units():
  scale = serve.HandScale(line_height=100.0, point_step=5.0)
  # A 50 px tall stroke drawn downwards, sampled every pixel, and a dot.
  stroke = [[10.0, 10.0 + i] for i in range(51)]
  offsets = serve.canvas_to_offsets([stroke, [[60.0, 20.0]], [[70.0, 10.0], [90.0, 60.0]]], scale)
  pts = strokes_lib.offsets_to_points(offsets)
  parts = strokes_lib.points_to_strokes(pts)
  assert len(parts) == 3 and len(parts[1]) == 1
  first = parts[0]
  assert first[-1, 1] < first[0, 1]  # drawn down the screen: y goes down in training units (y up)
  np.testing.assert_allclose(np.ptp(pts[:, 1]), 100.0, rtol=1e-5)  # the line height of the training data
  np.testing.assert_allclose(np.linalg.norm(np.diff(first, axis=0), axis=1), 5.0, rtol=1e-5)  # its point spacing


@pytest.mark.parametrize("strokes, message", [
    ([], "non-empty list"), ([[[1, 2]], "x"], r"strokes\[1\]"), ([[[0, 0], [float("nan"), 1]]], "non-finite"),
    ([[[0, 0], [1e9, 1]]], "absurd"), ([[[0, 0], [1, 1]]], "too small"), ([[[0, 0], [1, 1]] * 3000], "at most")])
def test_bad_canvas_strokes_are_named(strokes, message):
  with pytest.raises(serve.RequestError, match=message):
    serve.canvas_to_offsets(strokes, serve.HandScale(100.0, 5.0))


# ---------------------------------------------------------------------------------------------------------------
# HTTP.


def test_page_health_and_styles(server):
  status, page = _get(server + "/")
  assert status == 200 and b'id="canvas"' in page and b"/api/write" in page
  assert b"http://" not in page and b"https://" not in page  # no external assets: works offline
  status, health = _get(server + "/healthz")
  assert status == 200 and json.loads(health)["ok"] is True
  assert json.loads(_get(server + "/api/styles")[1])["styles"] == ["style_0"]


def test_write_over_http_with_a_hand_written_prime(server):
  hand = [[[10 + 3 * i, 40 + 20 * np.sin(i / 3)] for i in range(40)], [[150, 30], [160, 60]]]
  status, out = _post(server + "/api/write", json.dumps(
      {"text": "ab ba", "seed": 3, "prime": {"strokes": hand, "text": "hi there"}}).encode())
  assert status == 200, out
  assert out["svg"].startswith("<?xml") and "<path" in out["svg"] and len(out["lines"]) == 1


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not JSON"), (b"[1, 2]", "JSON object"), (b'{"text": ""}', "non-empty"),
    (json.dumps({"text": "x" * 401}).encode(), "at most 400"),
    (json.dumps({"text": "hello WORLD 42"}).encode(), "cannot write"),
    (json.dumps({"text": "ab", "bias": -1}).encode(), "bias must be in"),
    (json.dumps({"text": "ab", "bias": "high"}).encode(), "bias must be a number"),
    (json.dumps({"text": "ab", "seed": 1.5}).encode(), "seed must be an integer"),
    (json.dumps({"text": "ab", "seed": -3}).encode(), "seed must be in"),
    (json.dumps({"text": "ab", "style": "nope"}).encode(), "no style 'nope'"),
    (json.dumps({"text": "ab", "style": "style_0", "prime": {}}).encode(), "not both"),
    (b'{"text": "ab", "prime": {"strokes": [[[0, 0], [NaN, 1]]], "text": "ab"}}', "non-finite"),
    (json.dumps({"text": "ab", "prime": {"strokes": [[[0, 0], [50, 50]]], "text": ""}}).encode(), "prime.text"),
])
def test_bad_requests_are_one_line_400s_and_the_server_stays_up(server, body, message):
  status, out = _post(server + "/api/write", body)
  assert status == 400 and message in out["error"] and "\n" not in out["error"], out
  assert _get(server + "/healthz")[0] == 200


# ---------------------------------------------------------------------------------------------------------------
# The page in a real browser: headless Chromium (Debian chromium + chromium-driver, installed by .ci/run).

def _chromium(tmp_path):
  """A headless Chromium driven by Debian's chromedriver, with a fresh profile; fails (never skips) without it."""
  try:
    return browser_lib.headless_chromium(str(tmp_path / "profile"))
  except browser_lib.NoBrowserError as e:
    pytest.fail(str(e))


def test_the_page_writes_typed_text_and_then_in_a_hand_drawn_on_its_canvas(server, tmp_path):
  """Type text, press write, wait for the animated SVG; then draw a prime on the canvas, say what it reads, write
  again in that hand; no error shown, downloads offered, a screenshot saved."""
  from selenium.webdriver.common.action_chains import ActionChains  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support import expected_conditions as ec  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import Select, WebDriverWait  # pylint: disable=g-import-not-at-top
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
    pen = ActionChains(browser).move_to_element_with_offset(canvas, -400, 0).click_and_hold()
    for i in range(30):
      pen.move_by_offset(6, int(12 * np.sin(i / 2)) - int(12 * np.sin((i - 1) / 2)))
    pen.release().move_by_offset(20, -10).click_and_hold().move_by_offset(3, 25).release().perform()
    assert browser.execute_script("return strokes.length") == 2
    assert browser.execute_script("return strokes[0].length") >= 20
    browser.find_element(By.ID, "handtext").send_keys("hi there")
    browser.find_element(By.ID, "write").click()
    wait.until(ec.staleness_of(first))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#written path")))
    assert browser.find_element(By.ID, "error").text == ""
    assert browser.save_screenshot(str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 5000
  finally:
    browser.quit()
