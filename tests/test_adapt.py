"""Learning a hand from a few lines: the fine-tuning (`adaptation.adapt`), what each choice moves, the saved writer,
and the command line's refusals.

The writers are tiny random networks saved as training checkpoints (the layout train.py writes), as in test_write.py;
the lines are noisy loops with their texts.
"""

import os
import subprocess

import jax
import numpy as np
import pytest
import test_write
from flax import nnx

from configs import prediction as prediction_config
from configs import synthesis as synthesis_config
from handwriting_jax import adapt as adapt_cli
from handwriting_jax.data.alphabet import UnknownCharactersError
from handwriting_jax.training import checkpoint as ckpt_lib
from handwriting_jax.writing import adaptation
from handwriting_jax.writing import writer as writer_lib

CHARS, STATS = test_write.CHARS, test_write.STATS
TEXTS = ("ab cd", "hello", "a b")


@pytest.fixture(scope="module")
def synth_workdir(tmp_path_factory) -> str:
  workdir = str(tmp_path_factory.mktemp("synth"))
  config = synthesis_config.get_config("tiny")
  config.sample.max_steps_per_char = 8
  test_write.save_checkpoint(workdir, config)
  return workdir


@pytest.fixture(scope="module")
def pred_workdir(tmp_path_factory) -> str:
  workdir = str(tmp_path_factory.mktemp("pred"))
  test_write.save_checkpoint(workdir, prediction_config.get_config("tiny"))
  return workdir


@pytest.fixture
def writer(synth_workdir) -> writer_lib.Writer:
  return writer_lib.load_writer(synth_workdir)


def _line(seed: int, length: int) -> np.ndarray:
  """Raw offsets [length, 3] of a noisy pen going round in loops (something to learn), the pen lifted every 8 points
  and at the end."""
  t = np.arange(length)
  xy = np.stack([2.0 + 3.0 * np.cos(0.7 * t + seed), 3.0 * np.sin(0.7 * t + seed)], axis=1)
  xy += np.random.default_rng(seed).normal(size=xy.shape) * 0.3
  eos = (t % 8 == 7) | (t == length - 1)
  return np.concatenate([xy, eos[:, None]], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def lines() -> list[tuple[np.ndarray, str]]:
  return [(_line(i, 30 + 7 * i), text) for i, text in enumerate(TEXTS)]


def _named_leaves(writer: writer_lib.Writer) -> dict[str, np.ndarray]:
  params = nnx.state(writer.model, nnx.Param)
  return dict(zip(adaptation._leaf_names(params), (np.asarray(x) for x in jax.tree.leaves(params))))


# ---------------------------------------------------------------------------------------------------------------
# The library.


@pytest.fixture(scope="module")
def adapted_all(synth_workdir, lines) -> tuple[writer_lib.Writer, writer_lib.Writer, adaptation.Result]:
  """(source writer, adapted writer, result) of 15 steps of `all` without the pull at a large learning rate."""
  source = writer_lib.load_writer(synth_workdir)
  return source, *adaptation.adapt(source, lines, steps=15, learning_rate=1e-2, what="all", pull=0.0)


def _drift(old: writer_lib.Writer, new: writer_lib.Writer) -> float:
  a, b = _named_leaves(old), _named_leaves(new)
  return sum(float(np.sum((b[n] - a[n]) ** 2)) for n in a)


def test_adapting_lowers_the_nll_of_the_lines_and_leaves_the_source_alone(adapted_all, synth_workdir, lines):
  source, adapted, result = adapted_all
  before = adaptation.mean_nll(source, lines)
  after = adaptation.mean_nll(adapted, lines)
  assert len(result.losses) == 15 and np.all(np.isfinite(result.losses))
  assert result.losses[0] == pytest.approx(before, rel=1e-4)  # the first step's loss is the untouched network's
  assert after < before - 0.1 * abs(before), (before, after)
  fresh = _named_leaves(writer_lib.load_writer(synth_workdir))
  for name, x in _named_leaves(source).items():
    np.testing.assert_array_equal(x, fresh[name])  # a new network; the source's parameters are kept


def test_the_pull_keeps_all_near_the_original_weights(adapted_all, lines):
  source, free, _ = adapted_all
  pulled, result = adaptation.adapt(source, lines, steps=15, learning_rate=1e-2, what="all", pull=1e4)
  assert result.pull == 1e4
  assert _drift(source, pulled) < 0.5 * _drift(source, free)


def test_output_moves_only_the_mixture_output_layer(writer, lines):
  adapted, _ = adaptation.adapt(writer, lines, steps=3, learning_rate=1e-2, what="output")
  old, new = _named_leaves(writer), _named_leaves(adapted)
  assert {n.split("/")[-1] for n in old} >= {"w_y", "b_y", "w_x", "w_h", "w_window"}
  for name in old:
    if name.split("/")[-1] in adaptation.OUTPUT_PARAMS:
      assert not np.array_equal(old[name], new[name]), name
    else:
      assert np.array_equal(old[name], new[name]), name  # bitwise


def test_lora_moves_weight_matrices_only_and_learns(writer, lines):
  adapted, result = adaptation.adapt(writer, lines, steps=15, learning_rate=1e-2, what="lora")
  old, new = _named_leaves(writer), _named_leaves(adapted)
  moved = {n for n in old if not np.array_equal(old[n], new[n])}
  assert moved and all(old[n].ndim == 2 for n in moved)
  assert all(np.array_equal(old[n], new[n]) for n in old if old[n].ndim == 1)  # biases untouched
  assert result.losses[-1] < result.losses[0] - 0.05 * abs(result.losses[0]), result.losses


def test_saved_writer_loads_writes_and_says_where_it_came_from(adapted_all, lines, tmp_path):
  writer, adapted, result = adapted_all
  out = str(tmp_path / "mine")
  adaptation.save_adapted(writer, adapted, lines, result, out, seconds=1.5)
  loaded = writer_lib.load_writer(out)
  for name, x in _named_leaves(adapted).items():
    np.testing.assert_array_equal(_named_leaves(loaded)[name], x)
  assert loaded.alphabet == writer.alphabet and loaded.step == writer.step
  np.testing.assert_array_equal(loaded.stats.std, writer.stats.std)
  assert loaded.config.to_dict() == writer.config.to_dict()
  assert writer_lib.style_names(out) == [f"hand_{i}" for i in range(len(lines))]
  strokes, text = writer_lib.writer_style(loaded, "hand_1")
  np.testing.assert_array_equal(strokes, lines[1][0])
  assert text == lines[1][1]
  samples = writer_lib.write_lines(loaded, ["ab"], bias=1.0, seed=0, prime=writer_lib.make_prime(loaded, strokes, text))
  assert samples.lines[0].shape[1] == 3 and len(samples.lines[0]) > 0
  metadata = ckpt_lib.Checkpointer(out, read_only=True).restore_metadata()
  info = metadata["adapted_from"]
  assert metadata["params_only"] and "data_iter" not in metadata
  assert info["workdir"] == writer.workdir and info["step"] == writer.step and info["texts"] == list(TEXTS)
  assert info["adapted"] == "all" and info["steps"] == 15 and info["learning_rate"] == 1e-2 and info["seconds"] == 1.5
  assert info["pull"] == 0.0 and info["nll_first"] == result.losses[0]
  with pytest.raises(adaptation.AdaptError, match="already holds a checkpoint"):
    adaptation.save_adapted(writer, adapted, lines, result, out)


def test_refusals_of_the_library(writer, lines, pred_workdir):
  with pytest.raises(adaptation.AdaptError, match="no lines"):
    adaptation.adapt(writer, [])
  with pytest.raises(adaptation.AdaptError, match="1 to 10 lines"):
    adaptation.adapt(writer, lines * 4)
  with pytest.raises(UnknownCharactersError, match="€"):
    adaptation.adapt(writer, [(lines[0][0], "ab €")])
  with pytest.raises(adaptation.AdaptError, match="text is empty"):
    adaptation.adapt(writer, [(lines[0][0], "  ")])
  with pytest.raises(adaptation.AdaptError, match="offsets"):
    adaptation.adapt(writer, [(lines[0][0][:, :2], "ab")])
  with pytest.raises(adaptation.AdaptError, match="non-finite"):
    adaptation.adapt(writer, [(np.full((5, 3), np.nan, np.float32), "ab")])
  with pytest.raises(adaptation.AdaptError, match="--adapt=everything"):
    adaptation.adapt(writer, lines, what="everything")
  with pytest.raises(adaptation.AdaptError, match="prediction network"):
    adaptation.adapt(writer_lib.load_writer(pred_workdir), lines)


# ---------------------------------------------------------------------------------------------------------------
# The command line.


def _cli(*args: str) -> subprocess.CompletedProcess:
  return test_write.run_module("handwriting_jax.adapt", *args)


@pytest.fixture(scope="module")
def style_files(tmp_path_factory, lines) -> list[str]:
  folder = tmp_path_factory.mktemp("styles")
  paths = []
  for i, (strokes, text) in enumerate(lines):
    paths.append(str(folder / f"line_{i}.npz"))
    writer_lib.save_style(paths[-1], strokes, text)
  return paths


def test_cli_adapts_saves_and_summarises(synth_workdir, style_files, tmp_path):
  out = str(tmp_path / "mine")
  proc = _cli(
    *[f"--style_file={p}" for p in style_files],
    f"--workdir={synth_workdir}",
    f"--out={out}",
    "--steps=4",
    "--adapt=output",
    "--learning_rate=0.01",
  )
  assert proc.returncode == 0, proc.stderr
  summary = proc.stdout.strip().splitlines()
  assert len(summary) == 1 and "3 lines" in summary[0] and "nats per line" in summary[0] and " s wall" in summary[0]
  assert "step 4/4" in proc.stderr and "ETA" in proc.stderr
  loaded = writer_lib.load_writer(out)
  assert loaded.conditional and writer_lib.style_names(out) == ["hand_0", "hand_1", "hand_2"]
  info = ckpt_lib.Checkpointer(out, read_only=True).restore_metadata()["adapted_from"]
  assert info["adapted"] == "output" and info["steps"] == 4 and info["texts"] == list(TEXTS)


def _refused(proc: subprocess.CompletedProcess, *words: str) -> None:
  assert proc.returncode == 1, (proc.returncode, proc.stderr)
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  assert "step 1/" not in proc.stderr and not proc.stdout
  for word in words:
    assert word in lines[0], lines[0]


@pytest.mark.parametrize(
  "case", ["no_style", "missing", "corrupt", "unknown_chars", "too_many", "used_out", "prediction"]
)
def test_cli_refuses_before_training(case, synth_workdir, pred_workdir, style_files, tmp_path):
  out = tmp_path / "out"
  workdir = pred_workdir if case == "prediction" else synth_workdir
  files, words = list(style_files), []
  if case == "no_style":
    files, words = [], ["--style_file"]
  elif case == "missing":
    files, words = [str(tmp_path / "nowhere.npz")], ["does not exist"]
  elif case == "corrupt":
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    files, words = [str(tmp_path / "bad.npz")], ["is not a style"]
  elif case == "unknown_chars":
    writer_lib.save_style(str(tmp_path / "euro.npz"), _line(9, 20), "5 €")
    files, words = [str(tmp_path / "euro.npz")], ["€"]
  elif case == "too_many":
    files, words = style_files * 4, ["12", "1 to 10"]
  elif case == "used_out":
    test_write.save_checkpoint(str(out), synthesis_config.get_config("tiny"))
    words = ["already holds a checkpoint"]
  else:
    words = ["prediction network"]
  had_out = out.exists()
  _refused(_cli(*[f"--style_file={p}" for p in files], f"--workdir={workdir}", f"--out={out}", "--steps=2"), *words)
  assert out.exists() == had_out  # nothing written


def test_adapts_from_inkml_ink_rescaled_to_the_hand(synth_workdir, tmp_path):
  ink = tmp_path / "mine.inkml"
  traces = "".join(
    f"<trace>{', '.join(f'{x + 300 * k} {y}' for x, y in [(0, 0), (40, 120), (80, 0), (120, 120)])}</trace>"
    for k in range(3)
  )
  ink.write_text(
    f'<ink xmlns="http://www.w3.org/2003/InkML"><annotation type="truth">{TEXTS[0]}</annotation>{traces}</ink>',
    encoding="utf-8",
  )
  out = str(tmp_path / "mine")
  summary = adapt_cli.run([str(ink)], out, workdir=synth_workdir, steps=2, what="output", learning_rate=0.01)
  assert "1 line" in summary
  strokes, text = writer_lib.load_style(os.path.join(out, "styles", "hand_0.npz"))
  scale = writer_lib.hand_scale(writer_lib.load_writer(synth_workdir))
  assert text == TEXTS[0]
  np.testing.assert_allclose(np.ptp(np.cumsum(strokes[:, 1])), scale.line_height, rtol=1e-4)  # the writer's size
