"""The README's screenshot of the web page: the shipped writer served on loopback, driven by headless Chromium (Debian
chromium + chromium-driver): text typed, a style picked, written, the pen animation left to finish.

  python experiments/page_screenshot.py --out=docs/assets/serve_page.png
"""

import argparse
import os
import socket
import sys
import tempfile
import threading
import time

import uvicorn

from handwriting_jax.serving import app as app_lib
from handwriting_jax.writing import writer as writer_lib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import browser as browser_lib


def main() -> None:
  """Serve, write, screenshot."""
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="serve_page.png", help="PNG to write")
  p.add_argument("--workdir", default=None, help="writer (default: the shipped one)")
  p.add_argument("--text", default="handwriting in jax, written on a cpu\nby a network that learned to write")
  p.add_argument("--style", default="style_0")
  p.add_argument("--size", default="1100,760", help="window width,height in pixels")
  args = p.parse_args()
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support import expected_conditions as ec
  from selenium.webdriver.support.ui import Select, WebDriverWait

  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  service = app_lib.Service(writer_lib.load_writer(args.workdir))
  server = uvicorn.Server(uvicorn.Config(app_lib.make_app(service), host="127.0.0.1", port=port, log_level="error"))
  threading.Thread(target=server.run, daemon=True).start()
  while not server.started:
    time.sleep(0.05)
  width, height = (int(v) for v in args.size.split(","))
  browser = browser_lib.headless_chromium(tempfile.mkdtemp(prefix="chromium_profile_"), width, height)
  try:
    wait = WebDriverWait(browser, 300)
    browser.get(f"http://127.0.0.1:{port}/")
    wait.until(lambda b: len(Select(b.find_element(By.ID, "style")).options) > 2)
    box = browser.find_element(By.ID, "text")
    box.clear()
    box.send_keys(args.text)
    if args.style:
      Select(browser.find_element(By.ID, "style")).select_by_value(args.style)
    browser.find_element(By.ID, "write").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#written path")))
    time.sleep(12)  # let the pen animation finish
    browser.save_screenshot(args.out)
    print(f"wrote {args.out}")
  finally:
    browser.quit()
    server.should_exit = True
    service.batched.close()


if __name__ == "__main__":
  main()
