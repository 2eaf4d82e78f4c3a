"""The static site (`export_web`) measured as a user meets it, in headless Chromium on loopback: how long the first
line of 40 characters takes on a warm page (unprimed and primed), the site's size, and the legibility of what the page
writes against the Python writer's (the same `evaluate` sentences, bias and number of draws, read by tesseract).

  python experiments/web_check.py --out=experiments/results/web_check.json          # the shipped writer (~2 min)
  python experiments/web_check.py --workdir=DIR --site=site/ --seeds=3

Needs Debian's chromium + chromium-driver, tesseract, and what `export_web` needs (the `web` extra, npm once).
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

from handwriting_jax.evaluation import legibility, report
from handwriting_jax.model import sampling as sample_lib
from handwriting_jax.serving import web_export
from handwriting_jax.writing import writer as writer_lib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import browser as browser_lib

FORTY = "the quick brown fox jumps over a lazy dog"[:40]


def first_line_times(driver, style: dict, repeats: int) -> dict:
  """Milliseconds until a 40-character line is fully written, unprimed and primed with `style`, `repeats` times
  each, alternated, after one warm-up write of each."""
  times: dict[str, list[float]] = {"unprimed": [], "primed": []}
  for r in range(repeats + 1):
    for kind, prime in (("unprimed", None), ("primed", style)):
      res = browser_lib.run_async(
        driver, "return window.handwritingPage.writeLines([args[0]], {bias: 0.75, seed: args[1], prime: args[2]})",
        FORTY, r, prime,
      )  # fmt: skip
      if r:  # the first round warms the page (compiles the WebAssembly paths)
        times[kind].append(res["firstLineMs"])
  return {
    kind: {"median_ms": float(np.median(v)), "max_ms": float(np.max(v)), "all_ms": v} for kind, v in times.items()
  }


def browser_lines(driver, sentences: list[str], seeds: int, bias: float) -> list[np.ndarray]:
  """Every sentence written by the page once per seed (seed-major, as `evaluate` orders them): raw offsets."""
  lines = []
  for seed in range(seeds):
    for text in sentences:
      res = browser_lib.run_async(
        driver, "return window.handwritingPage.writeLines([args[0]], {bias: args[1], seed: args[2], prime: null})",
        text, bias, 1000 + seed,
      )  # fmt: skip
      lines.append(np.asarray(res["offsets"][0], np.float32))
  return lines


def shot(driver, text: str, path: str) -> None:
  """Type `text` into the page, press write, wait for the pen to finish, save a screenshot to `path`."""
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait

  box = driver.find_element(By.ID, "text")
  box.clear()
  box.send_keys(text)
  driver.find_element(By.ID, "write").click()
  WebDriverWait(driver, 120).until(lambda d: d.find_element(By.ID, "dlpng").is_displayed())
  driver.save_screenshot(path)


def main() -> None:
  """Build (or take) the site, serve it, time it, read what it writes and what the Python writer writes."""
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", default=None, help="the writer (default: the shipped one)")
  p.add_argument("--site", default=None, help="an exported site (default: exported now into a temporary folder)")
  p.add_argument("--seeds", type=int, default=3, help="draws of every sentence")
  p.add_argument("--bias", type=float, default=0.75)
  p.add_argument("--repeats", type=int, default=5, help="timed first lines of each kind")
  p.add_argument("--out", default="", help="write the figures as JSON here")
  p.add_argument("--screenshot", default="", help="save a PNG of the page after writing --text with the pen finished")
  p.add_argument("--text", default="handwriting in your browser: no server,\nwritten at 9:30 on 6 Dec 2026")
  args = p.parse_args()

  writer = writer_lib.load_writer(args.workdir)
  work = tempfile.mkdtemp(prefix="web_check_")
  site_dir = args.site or os.path.join(work, "site")
  if not args.site:
    summary = web_export.build_site(writer, site_dir)
    print(f"exported {site_dir}: {summary.total_bytes / 1e6:.2f} MB", flush=True)
  size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(site_dir) for f in fs)
  with open(os.path.join(site_dir, "model.json")) as f:
    style = json.load(f)["styles"][0]
  sentences = list(report.SENTENCES)
  with browser_lib.static_server(site_dir) as url:
    driver = browser_lib.headless_chromium(os.path.join(work, "profile"))
    try:
      driver.set_script_timeout(600)
      driver.get(url + "/")
      load_ms = browser_lib.run_async(driver, "await window.handwritingPage.ready; return performance.now()")
      times = first_line_times(driver, style, args.repeats)
      print(f"first line of 40 characters: {json.dumps({k: v['median_ms'] for k, v in times.items()})} ms", flush=True)
      if args.screenshot:
        shot(driver, args.text, args.screenshot)
      t0 = time.time()
      raw = browser_lines(driver, sentences, args.seeds, args.bias)
      write_s = time.time() - t0
    finally:
      driver.quit()
  texts = [s for _ in range(args.seeds) for s in sentences]
  shown = sample_lib.display_lines(raw, writer.config)  # drawn as `write` draws a line, as evaluate reads them
  paths = [
    os.path.join(work, "browser", f"s{i % len(sentences):02d}_seed{i // len(sentences)}.png") for i in range(len(texts))
  ]
  browser_rates = legibility.error_rates(legibility.read_lines(shown, texts, paths))
  python = report.legibility_at(writer, args.bias, args.seeds, os.path.join(work, "python"))
  result = {
    "date": time.strftime("%Y-%m-%d %H:%M"),
    "host": platform.node(),
    "writer": writer.workdir,
    "step": writer.step,
    "site_bytes": size,
    "page_ready_ms": load_ms,
    "first_line_40_chars": times,
    "browser": {**browser_rates, "lines": len(texts), "write_s": write_s},
    "python": {"cer": python["cer"], "wer": python["wer"], "lines": python["lines"]},
    "bias": args.bias,
    "seeds": args.seeds,
    "images": work,
  }
  print(json.dumps({k: v for k, v in result.items() if k != "first_line_40_chars"}, indent=1))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
