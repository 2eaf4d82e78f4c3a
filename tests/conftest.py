"""Fixtures shared by the test modules."""

import importlib.util
import os

import pytest

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
