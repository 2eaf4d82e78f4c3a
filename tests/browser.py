"""Headless Chromium driven by Selenium, for the web pages' browser tests, their screenshots and experiments.

Needs Debian's chromium and chromium-driver (`.ci/run` installs them) and selenium (the `dev` extra).
"""

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from handwriting_jax.errors import UserError

FLAGS = (
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
  "--hide-scrollbars",
)


class NoBrowserError(UserError, RuntimeError):
  """Chromium or its driver is not installed."""


def headless_chromium(profile_dir: str, width: int = 1100, height: int = 900):
  """A selenium webdriver.Chrome on Debian's Chromium, headless, with a fresh profile in `profile_dir` and a window
  of `width` x `height` pixels; NoBrowserError naming the packages when they are missing."""
  from selenium import webdriver  # a dev dependency
  from selenium.webdriver.chrome.service import Service

  binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
  if not binary or not driver:
    raise NoBrowserError("driving the page needs Chromium: apt-get install chromium chromium-driver (.ci/run does)")
  options = webdriver.ChromeOptions()
  options.binary_location = binary
  for flag in (*FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile_dir}"):
    options.add_argument(flag)
  return webdriver.Chrome(options=options, service=Service(executable_path=driver))


@contextlib.contextmanager
def static_server(folder: str) -> Iterator[str]:
  """`python -m http.server` serving `folder` on a free loopback port, as a plain static host would; yields its URL."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  cmd = [sys.executable, "-m", "http.server", "-b", "127.0.0.1", "-d", folder, str(port)]
  server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    for _ in range(200):
      try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
          break
      except OSError:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
  finally:
    server.kill()
    server.wait()


def run_async(driver, body: str, *args):
  """Run the body of an async JavaScript function in the page once `window.handwritingPage` exists (`args` as
  args[i]); its value, or AssertionError with what the page threw."""
  script = (
    "const done = arguments[arguments.length - 1], args = Array.from(arguments).slice(0, -1);"
    "const wait = () => window.handwritingPage ? Promise.resolve((async () => { " + body + " })()) : "
    "new Promise((r) => setTimeout(r, 50)).then(wait);"
    "wait().then((v) => done({ok: v}), (e) => done({error: String(e && e.message || e)}));"
  )
  result = driver.execute_async_script(script, *args)
  if "error" in result:
    raise AssertionError(f"the page threw: {result['error']}")
  return result["ok"]
