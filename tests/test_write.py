"""Writing from a checkpoint: loading, wrapping, pages (SVG structure), styles, training samples and CLI errors.

The checkpoints are tiny random networks saved directly with the project's Checkpointer (the layout train.py
writes: a TrainState tree plus metadata with config, alphabet and normalisation statistics).
"""

import json
import os
import re
import shutil
import string
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from configs import prediction as prediction_config
from configs import synthesis as synthesis_config
from handwriting_jax import write
from handwriting_jax.data import ink as ink_lib
from handwriting_jax.data.alphabet import Alphabet, UnknownCharactersError
from handwriting_jax.data.strokes import NormStats
from handwriting_jax.model import networks
from handwriting_jax.training import checkpoint as ckpt_lib
from handwriting_jax.training import optim
from handwriting_jax.training import samples as training_samples
from handwriting_jax.training import step as step_lib
from handwriting_jax.writing import writer as writer_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHARS = " " + string.ascii_letters + string.digits + ".,'!?-"
STATS = NormStats(mean=np.array([0.5, 0.0], np.float32), std=np.array([4.0, 3.0], np.float32))
SVG = "{http://www.w3.org/2000/svg}"


def save_checkpoint(workdir: str, config, step: int = 7) -> nnx.State:
  """A training checkpoint of an untrained network of `config` with the test alphabet and statistics."""
  alphabet = Alphabet(CHARS)
  model = networks.create_model(config, alphabet.size)
  _, state = step_lib.create_train_state(model, optim.make_optimizer(config.optim, config.train.num_steps))
  state = state._replace(step=jax.numpy.asarray(step, jax.numpy.int32))
  ckpt = ckpt_lib.Checkpointer(workdir)
  ckpt.save(
    step,
    state,
    {"config": json.loads(config.to_json_best_effort()), "alphabet": alphabet.chars, "norm": STATS.to_arrays()},
  )
  ckpt.close()
  return state.params


@pytest.fixture(scope="module")
def synth_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("synth"))
  config = synthesis_config.get_config("tiny")
  config.sample.max_steps_per_char = 8
  return workdir, save_checkpoint(workdir, config)


@pytest.fixture(scope="module")
def pred_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("pred"))
  config = prediction_config.get_config("tiny")
  config.sample.max_steps = 40
  return workdir, save_checkpoint(workdir, config)


@pytest.fixture(scope="module")
def writer(synth_workdir):
  return writer_lib.load_writer(synth_workdir[0])


def _count_strokes(line_Tx3: np.ndarray) -> int:
  return int(np.sum(line_Tx3[:, 2] > 0.5))  # the sampler lifts the pen on every line's last point


def run_module(module: str, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
  """`python -m module args...` from the checkout as a user runs it (on the CPU; `path` replaces PATH)."""
  env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu", **({"PATH": path} if path else {})}
  return subprocess.run(
    [sys.executable, "-m", module, *args],
    capture_output=True,
    text=True,
    env=env,
    cwd=REPO,
    timeout=300,
    check=False,
  )


def _cli(*args: str) -> subprocess.CompletedProcess:
  return run_module("handwriting_jax.write", *args)


# ---------------------------------------------------------------------------------------------------------
# Loading.


def test_load_writer_restores_the_saved_parameters(writer, synth_workdir):
  _, saved = synth_workdir
  assert writer.step == 7 and writer.conditional
  assert writer.alphabet == Alphabet(CHARS)
  np.testing.assert_array_equal(writer.stats.std, STATS.std)
  restored = nnx.state(writer.model, nnx.Param)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(saved), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # A freshly built network of the same config with another seed differs, so the comparison above can fail.
  config = writer.config.copy_and_resolve_references()
  config.seed = 123
  other = networks.create_model(config, writer.alphabet.size)
  assert not np.array_equal(np.asarray(other.w_y[...]), np.asarray(writer.model.w_y[...]))


def test_export_writes_a_smaller_params_only_checkpoint_that_loads(writer, synth_workdir, tmp_path):
  """`export_model` (how the shipped pretrained model is made) keeps the parameters, drops the optimiser state."""
  out = str(tmp_path / "exported")
  writer_lib.export_model(synth_workdir[0], out)
  exported = writer_lib.load_writer(out)
  assert exported.step == writer.step and exported.alphabet == writer.alphabet
  np.testing.assert_array_equal(exported.stats.mean, writer.stats.mean)
  for a, b in zip(
    jax.tree.leaves(nnx.state(exported.model, nnx.Param)),
    jax.tree.leaves(nnx.state(writer.model, nnx.Param)),
    strict=True,
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Only the parameters were written: the optimiser's moments are not in the exported tree.
  ckpt = ckpt_lib.Checkpointer(out, read_only=True)
  tree = ckpt.manager.restore(writer.step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  ckpt.close()
  assert set(tree.keys()) == {"params"}
  with pytest.raises(writer_lib.WriteError, match="already holds checkpoints"):
    writer_lib.export_model(synth_workdir[0], out)


def test_missing_checkpoint_errors(tmp_path, monkeypatch):
  with pytest.raises(writer_lib.WriteError, match="does not exist"):
    writer_lib.load_writer(str(tmp_path / "nowhere"))
  with pytest.raises(ckpt_lib.NoCheckpointError, match=str(tmp_path / "checkpoints")):
    writer_lib.load_writer(str(tmp_path))
  os.makedirs(tmp_path / "checkpoints")
  with pytest.raises(ckpt_lib.NoCheckpointError, match=str(tmp_path / "checkpoints")):
    writer_lib.load_writer(str(tmp_path))
  monkeypatch.setattr(writer_lib, "PRETRAINED_DIR", str(tmp_path / "pretrained"))
  with pytest.raises(writer_lib.WriteError, match="is not installed"):
    writer_lib.pretrained_workdir()
  with pytest.raises(writer_lib.WriteError, match="no shipped writer is called 'nope'"):
    writer_lib.pretrained_workdir("nope")


def test_corrupt_newest_checkpoint_writes_with_an_older_one_and_an_asked_for_step_is_one_error(tmp_path, caplog):
  workdir = str(tmp_path / "w")
  config = synthesis_config.get_config("tiny")
  older = save_checkpoint(workdir, config, step=3)
  save_checkpoint(workdir, config, step=7)
  os.remove(os.path.join(workdir, "checkpoints", "7", "metadata", "metadata"))
  with caplog.at_level("WARNING"):
    w = writer_lib.load_writer(workdir)
  assert w.step == 3
  assert any(
    re.search(r"checkpoint step 7 in .* cannot be read \(FileNotFoundError.*using step 3", r.getMessage())
    for r in caplog.records
  ), caplog.text
  chex.assert_trees_all_equal(nnx.state(w.model, nnx.Param), older)
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "7"))  # a reader moves nothing
  with pytest.raises(ckpt_lib.CheckpointReadError, match=r"cannot read checkpoint step 7 in .*FileNotFoundError"):
    writer_lib.load_writer(workdir, step=7)
  with pytest.raises(ckpt_lib.NoCheckpointError, match=r"no checkpoint of step 5 .* steps \[3, 7\]"):
    writer_lib.load_writer(workdir, step=5)


# ---------------------------------------------------------------------------------------------------------
# Text.


def test_wrap_text():
  text = "the quick brown fox jumps over the lazy dog\n\nsecond paragraph"
  lines = writer_lib.wrap_text(text, 12)
  assert all(len(x) <= 12 for x in lines)
  assert " ".join(lines) == " ".join(text.split())
  assert lines[-1] == "paragraph" and lines[-2] == "second"
  assert writer_lib.wrap_text("abcdefghij", 4) == ["abcd", "efgh", "ij"]
  for empty in ("", "  \n \t"):
    with pytest.raises(writer_lib.WriteError, match="empty"):
      writer_lib.wrap_text(empty, 10)


def test_unknown_characters_are_listed(writer):
  with pytest.raises(UnknownCharactersError, match=r"'~'.*'é'"):
    writer_lib.write_lines(writer, ["abc ~", "é"], bias=0.5, seed=0)


# ---------------------------------------------------------------------------------------------------------
# Pages.


def test_page_svg_has_one_path_per_stroke(writer, tmp_path):
  lines = writer_lib.wrap_text("a page of text written in one style by a tiny net", 16)
  samples = writer_lib.write_lines(writer, lines, bias=0.5, seed=1)
  assert len(samples.lines) == len(lines)
  # Lines after the first are primed with the first (its text precedes theirs in the window's text).
  assert samples.texts[0] == lines[0] and all(t == lines[0] + " " + x for t, x in zip(samples.texts[1:], lines[1:]))
  path = str(tmp_path / "page.svg")
  writer_lib.save_page(samples.lines, path)
  root = ET.parse(path).getroot()
  assert root.tag == SVG + "svg"
  paths = root.findall(f".//{SVG}path")
  assert len(paths) == sum(_count_strokes(x) for x in samples.lines)
  groups = root.findall(f".//{SVG}g[@id]")
  assert [len(g.findall(f"{SVG}path")) for g in groups] == [_count_strokes(x) for x in samples.lines]


def test_same_seed_same_page(writer):
  lines = ["hello", "world"]
  a = writer_lib.write_lines(writer, lines, bias=0.5, seed=3)
  b = writer_lib.write_lines(writer, lines, bias=0.5, seed=3)  # (other seeds differ: see test_sample)
  for x, y in zip(a.lines, b.lines, strict=True):
    np.testing.assert_array_equal(x, y)


def test_style_file_round_trip_and_priming(writer, tmp_path):
  rng = np.random.default_rng(0)
  strokes = np.concatenate([rng.normal(size=(30, 2)) * 5, rng.random((30, 1)) < 0.2], axis=1).astype(np.float32)
  path = str(tmp_path / "style.npz")
  writer_lib.save_style(path, strokes, "my style")
  got, text = writer_lib.load_style(path)
  np.testing.assert_array_equal(got, strokes)
  assert text == "my style"
  prime = writer_lib.make_prime(writer, got, text)
  np.testing.assert_allclose(prime.strokes_Tx3[:, :2], (strokes[:, :2] - STATS.mean) / STATS.std, rtol=1e-6)
  samples = writer_lib.write_lines(writer, ["ab", "cd"], bias=0.5, seed=0, prime=prime)
  assert samples.texts == ["my style ab", "my style cd"]
  with open(tmp_path / "bad.npz", "wb") as f:
    np.savez(f, other=np.zeros(3))
  with pytest.raises(writer_lib.WriteError, match=r"bad.npz"):
    writer_lib.load_style(str(tmp_path / "bad.npz"))
  with pytest.raises(writer_lib.WriteError, match="does not exist"):
    writer_lib.load_style(str(tmp_path / "missing.npz"))
  with open(path, "rb") as f:
    good = f.read()
  for name, content in (("empty.npz", b""), ("cut.npz", good[: len(good) // 2]), ("text.npz", b"not a zip")):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(writer_lib.WriteError, match=name):
      writer_lib.load_style(str(tmp_path / name))


def test_style_files_no_pen_could_make_are_refused_unread(tmp_path):
  """Offsets beyond any page, non-finite ones, and a zip bomb (a small file that unpacks to gigabytes: refused
  from its declared sizes, never unpacked)."""
  line = np.array([[1.0, 2.0, 0.0], [3.0, -1.0, 1.0]], np.float32)
  for name, value in (("far.npz", 1e30), ("nan.npz", np.nan)):
    bad = line.copy()
    bad[1, 0] = value
    writer_lib.save_style(str(tmp_path / name), bad, "hi")
    with pytest.raises(writer_lib.WriteError, match=f"{name} holds non-finite or absurd offsets"):
      writer_lib.load_style(str(tmp_path / name))
  bomb = tmp_path / "bomb.npz"
  with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z, z.open("strokes.npy", "w", force_zip64=True) as member:
    zeros = bytes(1 << 20)
    for _ in range(writer_lib.MAX_STYLE_BYTES // len(zeros) + 1):
      member.write(zeros)
  assert bomb.stat().st_size < writer_lib.MAX_STYLE_BYTES // 100
  with pytest.raises(writer_lib.WriteError, match=r"bomb.npz unpacks to [\d,]+ bytes"):
    writer_lib.load_style(str(bomb))


def test_a_style_whose_text_the_writer_cannot_read_is_refused(writer):
  """Priming reads the style's text with the window: a character outside the alphabet is named, as in --text."""
  line = np.array([[1.0, 2.0, 0.0], [3.0, -1.0, 1.0]], np.float32)
  with pytest.raises(UnknownCharactersError, match=r"the style's text .* cannot write: '~'"):
    writer_lib.make_prime(writer, line, "ab~")
  assert writer_lib.make_prime(writer, line, "ab~", check_text=False).text == "ab~"  # data-set lines: mapped


def test_a_line_longer_than_the_writer_learnt_is_refused_before_sampling(synth_workdir, tmp_path):
  limit = int(writer_lib.load_writer(synth_workdir[0]).config.data.max_chars)
  request = write.Request(synth_workdir[0], str(tmp_path / "p.svg"), text="ab " * limit, width=10 * limit)
  with pytest.raises(writer_lib.WriteError, match=rf"--width: a line of \d+ characters; .* at most {limit}\b"):
    write.run(request)
  assert not os.path.exists(tmp_path / "p.svg")


def test_writer_styles_by_name_and_export_keeps_them(synth_workdir, tmp_path):
  workdir = str(tmp_path / "w")
  shutil.copytree(synth_workdir[0], workdir)
  assert writer_lib.style_names(workdir) == []
  os.makedirs(os.path.join(workdir, "styles"))
  writer_lib.save_style(os.path.join(workdir, "styles", "neat.npz"), np.array([[0, 0, 0], [1, 2, 1]]), "ab")
  writer = writer_lib.load_writer(workdir)
  strokes, text = writer_lib.writer_style(writer, "neat")
  assert text == "ab" and strokes.shape == (2, 3)
  with pytest.raises(writer_lib.WriteError, match="its styles are neat"):
    writer_lib.writer_style(writer, "messy")
  out = str(tmp_path / "page.svg")
  assert write.run(write.Request(workdir, out, text="cd", style_name="neat")) == [out]
  writer_lib.export_model(workdir, str(tmp_path / "export"))
  assert writer_lib.style_names(str(tmp_path / "export")) == ["neat"]


def test_run_with_dataset_style_png_and_plots(synth_workdir, tmp_path):
  out = str(tmp_path / "out" / "page.png")
  style_path = str(tmp_path / "style.npz")
  written = write.run(
    write.Request(synth_workdir[0], out, text="ab cd", style=2, save_style=style_path, plots=True, bias=0.5, width=3)
  )
  assert written[:2] == [style_path, out]
  assert sorted(os.path.basename(p) for p in written[2:]) == [
    "page_attention_0.png",
    "page_attention_1.png",
    "page_density_0.png",
    "page_density_1.png",
  ]
  for p in written:
    assert os.path.getsize(p) > 0
  _, text = writer_lib.load_style(style_path)
  assert text  # the transcription of validation line 2 of the tiny embedded corpus
  with pytest.raises(writer_lib.WriteError, match="--style=999"):
    write.run(write.Request(synth_workdir[0], out, text="ab", style=999))


def test_run_stop_rule_flag_changes_where_lines_end(synth_workdir, tmp_path):
  pages = {}
  for rule in ("paper", "finish"):
    out = str(tmp_path / f"{rule}.svg")
    write.run(write.Request(synth_workdir[0], out, text="ab cd ab", stop_rule=rule, seed=3))
    with open(out, encoding="utf-8") as f:
      pages[rule] = f.read()
  assert pages["paper"] != pages["finish"]
  with pytest.raises(writer_lib.WriteError, match="--stop_rule"):
    write.run(write.Request(synth_workdir[0], str(tmp_path / "x.svg"), text="ab", stop_rule="never"))


def test_run_animation_html_holds_the_pen_path(synth_workdir, tmp_path):
  out, anim = str(tmp_path / "page.svg"), str(tmp_path / "pen.html")
  assert write.run(write.Request(synth_workdir[0], out, text="ab", animation=anim)) == [out, anim]
  with open(anim, encoding="utf-8") as f:
    assert "<html" in f.read(2000).lower()
  with pytest.raises(writer_lib.WriteError, match="--animation"):
    write.run(write.Request(synth_workdir[0], out, text="ab", animation=str(tmp_path / "pen.mp4")))


def test_run_prediction_checkpoint(pred_workdir, tmp_path):
  out = str(tmp_path / "scribble.svg")
  assert write.run(write.Request(pred_workdir[0], out, num_lines=3, bias=0.2)) == [out]
  assert len(ET.parse(out).getroot().findall(f".//{SVG}g[@id]")) == 3
  with pytest.raises(writer_lib.WriteError, match="prediction network"):
    write.run(write.Request(pred_workdir[0], out, text="hello"))


def test_run_argument_errors(synth_workdir, tmp_path):
  workdir = synth_workdir[0]
  with pytest.raises(writer_lib.WriteError, match="must end in"):
    write.run(write.Request(workdir, str(tmp_path / "x.jpg"), text="ab"))
  with pytest.raises(writer_lib.WriteError, match="empty"):
    write.run(write.Request(workdir, str(tmp_path / "x.svg"), text="   "))
  with pytest.raises(writer_lib.WriteError, match="--text"):
    write.run(write.Request(workdir, str(tmp_path / "x.svg")))
  (tmp_path / "afile").write_text("x")
  with pytest.raises(writer_lib.WriteError, match="is a file"):
    write.run(write.Request(workdir, str(tmp_path / "afile" / "sub" / "x.svg"), text="ab"))
  os.makedirs(tmp_path / "adir.gif")
  with pytest.raises(writer_lib.WriteError, match="is a folder"):
    write.run(write.Request(workdir, str(tmp_path / "dir.svg"), text="ab", animation=str(tmp_path / "adir.gif")))
  with pytest.raises(writer_lib.WriteError, match="not several"):
    write.run(write.Request(workdir, str(tmp_path / "x.svg"), text="ab", style=1, style_file="s.npz"))
  with pytest.raises(writer_lib.WriteError, match="--style_text says what the line in --style_file says"):
    write.run(write.Request(workdir, str(tmp_path / "x.svg"), text="ab", style=1, style_text="hi"))
  with pytest.raises(writer_lib.WriteError, match="give --style, --style_file or --style_name"):
    write.run(write.Request(workdir, str(tmp_path / "x.svg"), text="ab", save_style=str(tmp_path / "s.npz")))
  with pytest.raises(writer_lib.WriteError, match=r"end the name in .npz"):
    write.run(write.Request(workdir, str(tmp_path / "x.svg"), text="ab", style=1, save_style=str(tmp_path / "s")))


# A line of one's own hand, "hi", as a tablet writes it (y down, its own units) and as an SVG drawing of it.
HI_INKML = """<ink xmlns="http://www.w3.org/2003/InkML"><annotation type="truth">hi</annotation>
  <traceFormat><channel name="X" type="decimal"/><channel name="Y" type="decimal"/><channel name="T"/></traceFormat>
  <trace>0 0 0, 0 10 1, 0 20 2</trace><trace>0 12 3, 5 8 4, 10 12 5, 10 20 6</trace><trace>15 10 7, 15 20 8</trace>
  <trace>15 5 9</trace></ink>"""
HI_SVG = """<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 V20 M0 12 C3 6 7 6 10 12 V20 M15 10 v10"/>
  <path d="M15 5 Z"/></svg>"""


def test_run_writes_in_the_hand_of_an_svg_and_saves_it_converted(writer, synth_workdir, tmp_path):
  svg, saved, out = str(tmp_path / "hi.svg"), str(tmp_path / "hi.npz"), str(tmp_path / "page.svg")
  with open(svg, "w", encoding="utf-8") as f:
    f.write(HI_SVG)
  with pytest.raises(ink_lib.InkError, match=r"hi.svg cannot say what its line says"):
    write.run(write.Request(synth_workdir[0], out, text="ab", style_file=svg))
  assert write.run(
    write.Request(synth_workdir[0], out, text="ab", style_file=svg, style_text="hi", save_style=saved)
  ) == [saved, out]
  strokes, text = writer_lib.load_style(saved)
  assert text == "hi"
  np.testing.assert_array_equal(strokes, writer_lib.load_style_any(writer, svg, "hi")[0])
  scale = writer_lib.hand_scale(writer)  # the tiny writer has no styles: 25 typical offsets tall
  np.testing.assert_allclose(np.ptp(np.cumsum(strokes[:, 1])), scale.line_height, rtol=1e-5)
  assert int(np.sum(strokes[:, 2])) == 4  # the h's stem, its hump, the i's stem and its dot
  ET.parse(out)


# ---------------------------------------------------------------------------------------------------------
# Samples during training.


@pytest.mark.parametrize("mode", ["synthesis", "prediction"])
def test_write_training_samples(mode, synth_workdir, pred_workdir, tmp_path):
  workdir = synth_workdir[0] if mode == "synthesis" else pred_workdir[0]
  w = writer_lib.load_writer(workdir)
  graphdef, params = nnx.split(w.model, nnx.Param)
  metadata = {"alphabet": w.alphabet.chars, "norm": STATS.to_arrays()}
  config = w.config
  config.sample.texts = ("ab cd", "e~f")  # "e~f" holds "~", outside the alphabet: skipped with a warning
  paths = training_samples.write_training_samples(graphdef, params, metadata, config, str(tmp_path), 2000)
  expected = ["step_0002000.png"] + (["attention_0002000.png"] if mode == "synthesis" else [])
  assert [os.path.relpath(p, tmp_path) for p in paths] == [os.path.join("samples", e) for e in expected]
  assert all(os.path.getsize(p) > 0 for p in paths)


# ---------------------------------------------------------------------------------------------------------
# Command line: one-line errors, non-zero exit; a page on success.


def test_cli_writes_svg(synth_workdir, tmp_path):
  out = str(tmp_path / "cli.svg")
  proc = _cli(f"--workdir={synth_workdir[0]}", "--text=hi there", "--bias=1.0", f"--out={out}", "--seed=2")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip().splitlines() == [out]
  ET.parse(out)


@pytest.mark.parametrize(
  "args, message",
  [
    (["--text=abc ~ é", "--workdir={synth}"], "'~', 'é'"),  # UnknownCharactersError
    (["--text=ab", "--workdir={tmp}/nowhere"], "workdir {tmp}/nowhere does not exist"),  # WriteError
    (["--text=ab", "--workdir={tmp}"], "no checkpoint in {tmp}/checkpoints"),  # NoCheckpointError
  ],
)
def test_cli_user_errors_are_one_line(args, message, synth_workdir, tmp_path):
  fill = {"synth": synth_workdir[0], "tmp": str(tmp_path)}
  proc = _cli(*[a.format(**fill) for a in args], f"--out={tmp_path / 'x.svg'}")
  assert proc.returncode == 1
  err = [line for line in proc.stderr.strip().splitlines() if line]
  assert len(err) == 1 and err[0].startswith("error: "), proc.stderr
  assert message.format(**fill) in err[0]


def test_cli_writes_in_the_hand_of_an_inkml_file_and_a_bad_style_file_is_one_line(synth_workdir, tmp_path):
  inkml, saved, out = str(tmp_path / "hi.inkml"), str(tmp_path / "hi.npz"), str(tmp_path / "page.svg")
  with open(inkml, "w", encoding="utf-8") as f:
    f.write(HI_INKML)
  proc = _cli(
    f"--workdir={synth_workdir[0]}", "--text=ab", f"--style_file={inkml}", f"--save_style={saved}", f"--out={out}"
  )
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip().splitlines() == [saved, out]
  strokes, text = writer_lib.load_style(saved)
  assert text == "hi" and int(np.sum(strokes[:, 2])) == 4
  ET.parse(out)
  bad, out2 = str(tmp_path / "bad.svg"), str(tmp_path / "page2.svg")
  with open(bad, "w", encoding="utf-8") as f:
    f.write("<svg><path d='M0 0 A5 5 0 0 1 10 10'/></svg>")
  proc = _cli(f"--workdir={synth_workdir[0]}", "--text=ab", f"--style_file={bad}", "--style_text=hi", f"--out={out2}")
  err = [line for line in proc.stderr.strip().splitlines() if line]
  assert proc.returncode == 1 and len(err) == 1 and err[0].startswith(f"error: SVG file {bad}"), proc.stderr
  assert "arc" in err[0] and not os.path.exists(out2)


@pytest.mark.parametrize(
  "fields, message",
  [
    ({"out": "/sys/page.svg"}, "--out=/sys/page.svg: nothing can be written in /sys"),  # a read-only file system
    ({"out": "{tmp}/page.svg", "animation": "{tmp}/f/pen.gif"}, "--animation={tmp}/f/pen.gif: {tmp}/f is a file"),
    ({"out": "{tmp}/page.svg", "style": 0, "save_style": "/sys/s.npz"}, "--save_style=/sys/s.npz: nothing can be"),
  ],
)
def test_every_output_path_is_checked_before_any_work(fields, message, tmp_path):
  """Outputs that cannot be written are refused before the writer is even loaded (a workdir that does not exist
  would be the next error), so no sampling is ever lost to them."""
  (tmp_path / "f").write_text("a file where a folder would go")
  fill = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in fields.items()}
  with pytest.raises(writer_lib.WriteError, match=re.escape(message.format(tmp=tmp_path))):
    write.run(write.Request(str(tmp_path / "no-such-workdir"), text="ab", **fill))


@pytest.mark.parametrize("name", writer_lib.SHIPPED)
def test_shipped_pretrained_model_writes_with_a_monotone_window(name):
  """Every writer in handwriting_jax/pretrained loads by name, and its window reads unseen text in order."""
  writer = writer_lib.load_writer(writer_lib.pretrained_workdir(name))
  assert writer.conditional and writer.workdir == os.path.join(os.path.abspath(writer_lib.PRETRAINED_DIR), name)
  if name == writer_lib.DEFAULT_SHIPPED:
    assert writer_lib.load_writer().workdir == writer.workdir
  text = "quiet judges vex"
  samples = writer_lib.write_lines(writer, [text], bias=1.0, seed=0)
  assert samples.finished_B.all()  # the paper's stop rule fired: the window moved past the last character
  reading = np.argmax(samples.line_phi(0), axis=-1)
  assert reading[0] <= 1 and reading[-1] >= len(text) - 2
  assert np.mean(np.diff(reading) >= 0) > 0.97  # monotone, as in the paper's Fig. 13
  assert np.all(np.isfinite(samples.lines[0]))


def test_export_average_writes_the_mean_of_the_newest_checkpoints(tmp_path):
  """`export_model(average=K)`: the mean parameters of the K checkpoints up to the step, not of others; too few is
  a one-line WriteError."""
  workdir = str(tmp_path / "w")
  params = {}
  for step, seed in ((5, 0), (6, 1), (7, 2)):
    config = synthesis_config.get_config("tiny")
    config.seed = seed  # a different network at every step
    params[step] = save_checkpoint(workdir, config, step)
  writer_lib.export_model(workdir, str(tmp_path / "avg"), step=7, average=2)
  exported = writer_lib.load_writer(str(tmp_path / "avg"))
  assert exported.step == 7
  for got, a, b in zip(
    jax.tree.leaves(nnx.state(exported.model, nnx.Param)),
    jax.tree.leaves(params[6]),
    jax.tree.leaves(params[7]),
    strict=True,
  ):
    np.testing.assert_allclose(np.asarray(got), (np.asarray(a) + np.asarray(b)) / 2, rtol=1e-6, atol=1e-7)
  assert any(
    not np.allclose(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(params[6]), jax.tree.leaves(params[7]))
  )
  writer_lib.export_model(workdir, str(tmp_path / "avg_at_6"), step=6, average=2)  # steps 5 and 6
  at6 = jax.tree.leaves(nnx.state(writer_lib.load_writer(str(tmp_path / "avg_at_6")).model, nnx.Param))
  for got, a, b in zip(at6, jax.tree.leaves(params[5]), jax.tree.leaves(params[6]), strict=True):
    np.testing.assert_allclose(np.asarray(got), (np.asarray(a) + np.asarray(b)) / 2, rtol=1e-6, atol=1e-7)
  with pytest.raises(writer_lib.WriteError, match="holds only 3 checkpoints"):
    writer_lib.export_model(workdir, str(tmp_path / "too_many"), average=4)
