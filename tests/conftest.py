"""Fixtures shared by the test modules."""

import importlib.util
import os

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

_CACHE_FLAGS = (
  "jax_compilation_cache_dir",
  "jax_persistent_cache_min_compile_time_secs",
  "jax_persistent_cache_min_entry_size_bytes",
)
_EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")


@pytest.fixture
def experiment():
  """A loader of `experiments/NAME.py` as a module (the scripts there are not a package)."""

  def load(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(_EXPERIMENTS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

  return load


@pytest.fixture(scope="session", autouse=True)
def compile_cache(tmp_path_factory) -> str:
  """A persistent compilation cache for the whole run (one per test worker), restored to the previous settings after.

  Many tests train, write or evaluate with the same tiny networks: a jitted step compiled once is read back from
  here by every later test (and by subprocesses given its path), seconds saved each time. The cache keys on the
  program and its compile options, so a hit runs the very executable a fresh compile would build."""
  path = str(tmp_path_factory.mktemp("jax_cache"))
  old = {name: getattr(jax.config, name) for name in _CACHE_FLAGS}
  for name, value in zip(_CACHE_FLAGS, (path, 0.0, 0)):
    jax.config.update(name, value)
  compilation_cache.reset_cache()
  yield path
  for name, value in old.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()
