"""Headless Chromium driven by Selenium, for the web page's browser test and the README's screenshot of it.

Needs Debian's chromium and chromium-driver (`.ci/run` installs them) and selenium (the `dev` extra).
"""

import shutil

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
