"""The package's layers: imports only go down, so each product (train, write, evaluate, serve) stands on the ones
below it and nothing low reaches up into a command line or a product above it."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "handwriting_jax"

# Low to high. A module may import its own layer's modules and any lower layer's, never a higher one's. The command
# lines (the top-level modules but the foundations) sit above everything and import no other command line.
LAYERS = (
  ("errors", "cli"),  # foundations: one-line errors, flag helpers
  ("data",),  # ink, text, data sets, drawing ink
  ("model",),  # the networks (pure LSTM, window, MDN) and their sampler
  ("config",),  # defaults and the validator of every field
  ("training",),  # loop, step, optimiser, weight noise, data parallelism, checkpoints
  ("writing",),  # the writer library, styles, adaptation to a hand
  ("evaluation",),  # NLL, legibility, style fidelity
  ("serving",),  # the web page and its API
)
COMMANDS = "commands"


def _unit(module: str) -> str:
  """The layer unit of `handwriting_jax.a.b`: its subpackage, a foundation module, or the command lines."""
  first = module.split(".")[1]
  return first if any(first in layer for layer in LAYERS) else COMMANDS


def _rank(unit: str) -> int:
  """The unit's height: its index in LAYERS, the command lines above them all."""
  return next((i for i, layer in enumerate(LAYERS) if unit in layer), len(LAYERS))


def _modules() -> dict[str, pathlib.Path]:
  """Every module of the package by dotted name."""
  found = {}
  for path in PACKAGE.rglob("*.py"):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    if name != "handwriting_jax":
      found[name] = path
  return found


def _imports(path: pathlib.Path, known: set[str]) -> set[str]:
  """The package modules `path` imports (at the top or inside a function), by dotted name."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names if a.name.startswith("handwriting_jax."))
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("handwriting_jax"):
      for a in node.names:
        full = f"{node.module}.{a.name}"
        names.add(full if full in known else node.module)
  return {n for n in names if n != "handwriting_jax"}


def violations() -> list[str]:
  """Every import that goes up a layer, sideways between command lines, or names no module."""
  modules = _modules()
  found = []
  for name, path in sorted(modules.items()):
    for imported in sorted(_imports(path, set(modules))):
      if imported not in modules:
        found.append(f"{name} imports {imported}, which is not a module of the package")
        continue
      mine, theirs = _unit(name), _unit(imported)
      if _rank(theirs) > _rank(mine) or (mine == theirs == COMMANDS):
        found.append(f"{name} ({mine}) imports {imported} ({theirs})")
  return found


def test_imports_only_go_down():
  assert not violations(), "\n".join(violations())


def test_the_rule_catches_an_upward_import(tmp_path, monkeypatch):
  """The checker itself: a data module importing the writer library, or one command line importing another, is
  reported."""
  fake = tmp_path / "handwriting_jax"
  for sub in ("data", "writing"):
    (fake / sub).mkdir(parents=True)
    (fake / sub / "__init__.py").write_text("")
  (fake / "__init__.py").write_text("")
  (fake / "writing" / "writer.py").write_text("X = 1\n")
  (fake / "data" / "ink.py").write_text("from handwriting_jax.writing import writer\n")
  (fake / "write.py").write_text("from handwriting_jax.writing import writer\n")
  (fake / "serve.py").write_text("from handwriting_jax import write\n")
  monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
  assert violations() == [
    "handwriting_jax.data.ink (data) imports handwriting_jax.writing.writer (writing)",
    "handwriting_jax.serve (commands) imports handwriting_jax.write (commands)",
  ]


@pytest.mark.parametrize("layer", [u for layer in LAYERS for u in layer if u not in ("errors", "cli")])
def test_every_layer_is_a_subpackage(layer):
  assert (PACKAGE / layer / "__init__.py").is_file()
