"""`evaluate`: exact validation NLL over every line, legibility per bias (tiny random networks), the report, errors."""

import glob
import json
import os
import re
import string

import numpy as np
import pytest
from flax import nnx

from configs import synthesis as synthesis_config
from handwriting_jax.data import batches as batches_lib
from handwriting_jax.data.alphabet import Alphabet, UnknownCharactersError
from handwriting_jax.data.strokes import NormStats
from handwriting_jax.evaluation import report as report_lib
from handwriting_jax.model import networks
from handwriting_jax.training import checkpoint as ckpt_lib
from handwriting_jax.training import optim
from handwriting_jax.training import step as step_lib
from handwriting_jax.writing import writer as writer_lib

CHARS = " " + string.ascii_letters + string.digits + ".,'!?-"
STATS = NormStats(mean=np.array([0.5, 0.0], np.float32), std=np.array([4.0, 3.0], np.float32))


def save_untrained_writer(workdir: str, config) -> None:
  """A checkpoint of an untrained network of `config` with the test alphabet and statistics (step 5)."""
  alphabet = Alphabet(CHARS)
  model = networks.create_model(config, alphabet.size)
  _, state = step_lib.create_train_state(model, optim.make_optimizer(config.optim, config.train.num_steps))
  ckpt = ckpt_lib.Checkpointer(workdir)
  ckpt.save(
    5,
    state,
    {"config": json.loads(config.to_json_best_effort()), "alphabet": alphabet.chars, "norm": STATS.to_arrays()},
  )
  ckpt.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("synth"))
  config = synthesis_config.get_config("tiny")
  config.sample.max_steps_per_char = 6
  save_untrained_writer(path, config)
  return path


def test_validation_nll_is_exact_over_every_line(workdir):
  writer = writer_lib.load_writer(workdir)
  valid = report_lib.load_validation(writer)
  assert len(valid.strokes) == writer.config.data.embedded.valid_lines  # every line, none repeated or dropped
  got = report_lib.validation_nll(writer, valid.strokes, valid.texts)
  # Reference: each line alone in a batch of one, no padding.
  graphdef, params = nnx.split(writer.model, nnx.Param)
  ref_total, ref_steps = 0.0, 0
  for line, text in zip(valid.strokes, valid.texts):
    ids = writer.alphabet.encode(text, on_unknown="map")
    batch = batches_lib.pad_batch([line], [ids], 1, len(line), max(len(ids), 1))
    ref_total += float(step_lib.batch_loss(graphdef, params, batch)[0])
    ref_steps += len(line)
  assert got["lines"] == len(valid.strokes) and got["steps"] == ref_steps
  np.testing.assert_allclose(got["nats_per_sequence"], ref_total / len(valid.strokes), rtol=1e-4)
  np.testing.assert_allclose(got["nats_per_step"], ref_total / ref_steps, rtol=1e-4)
  # Raw units: the density of de-normalised offsets, i.e. + log(σx σy) per step.
  np.testing.assert_allclose(
    got["raw_nats_per_sequence"], (ref_total + ref_steps * np.log(4.0 * 3.0)) / len(valid.strokes), rtol=1e-4
  )


def test_validation_uses_the_checkpoint_normalisation(workdir):
  writer = writer_lib.load_writer(workdir)
  valid = report_lib.load_validation(writer)
  from handwriting_jax.data import dataset as dataset_lib

  data = dataset_lib.load_dataset(writer.config.data, progress=False)
  np.testing.assert_allclose(
    STATS.denormalise(valid.strokes[0]), data.stats.denormalise(data.valid.strokes[0]), rtol=1e-5, atol=1e-4
  )


def test_padded_batch_matches_the_training_layout():
  line = np.arange(12, dtype=np.float32).reshape(4, 3)
  batch = batches_lib.pad_batch([line], [np.array([3, 4], np.int32)], 2, 6, 8)
  assert batch["inputs"].shape == (2, 6, 3) and batch["mask"].sum() == 4 and batch["char_mask"].sum() == 2
  np.testing.assert_array_equal(batch["inputs"][0, 0], batches_lib.FIRST_INPUT)
  np.testing.assert_array_equal(batch["inputs"][0, 1:4], line[:3])
  np.testing.assert_array_equal(batch["targets"][0, :4], line)
  assert not batch["inputs"][1].any() and not batch["mask"][1].any()


def test_evaluate_writes_a_report_with_nll_and_legibility(workdir, tmp_path):
  out = str(tmp_path / "eval")
  report = report_lib.evaluate(workdir, None, biases=[0.5, 2.0], seeds=2, out_dir=out, style_index=1)
  assert report["step"] == 5 and report["nll"]["lines"] == 16 and report["weights"] == "trained"  # no average kept
  assert [r["bias"] for r in report["legibility"]] == [0.5, 2.0]
  for r in report["legibility"] + report["legibility_primed"]:
    assert r["lines"] == 2 * len(report_lib.SENTENCES) and len(r["cer_per_seed"]) == 2
    assert r["wer"] >= 0.0 and r["cer"] > 0.5  # a random network scribbles
    assert all(os.path.isfile(line["image"]) for line in r["per_line"]) and os.path.isfile(r["sheet"])
  with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
    assert json.load(f)["legibility"][0]["cer"] == report["legibility"][0]["cer"]
  text = report_lib.summary(report)
  assert "nats/sequence" in text and "bias 0.5" in text and "primed" in text and "trained weights" in text


def test_without_the_data_only_legibility_is_reported(tmp_path):
  config = synthesis_config.get_config("tiny")
  config.sample.max_steps_per_char = 4
  config.data.source = "iam"
  config.data.iam_path = str(tmp_path / "not-here")
  save_untrained_writer(str(tmp_path / "w"), config)
  report = report_lib.evaluate(str(tmp_path / "w"), None, biases=[1.0], seeds=1, out_dir=str(tmp_path / "e"))
  assert report["nll"] is None and "not available" in report["nll_unavailable"]
  assert "not-here" in report["nll_unavailable"] and len(report["legibility"]) == 1
  assert "no NLL" in report_lib.summary(report)


def test_overlap_finds_a_training_sentence():
  assert report_lib.overlap(["the cat sat", "a dog"], ["Then The Cat Sat down", "dogs"]) == ["the cat sat"]


@pytest.mark.parametrize(
  "kwargs, message",
  [
    ({"biases": [-1.0], "seeds": 1}, "biases"),
    ({"biases": [0.5], "seeds": 0}, "seeds"),
    ({"biases": [0.5], "seeds": 1, "stop_rule": "late"}, "stop_rule"),
  ],
)
def test_bad_arguments(workdir, tmp_path, kwargs, message):
  with pytest.raises(report_lib.EvaluateError, match=message):
    report_lib.evaluate(workdir, None, out_dir=str(tmp_path), **kwargs)


@pytest.mark.parametrize("where", ["under_a_file", "read_only"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_sampling(workdir, tmp_path, where):
  """--out under a file, or on a read-only file system: one error naming --out, before a line is written."""
  (tmp_path / "f").write_text("a file where a folder would go")
  out = str(tmp_path / "f" / "eval") if where == "under_a_file" else "/sys/eval"
  with pytest.raises(writer_lib.WriteError, match=f"--out={re.escape(out)}/report.json: "):
    report_lib.evaluate(workdir, None, out_dir=out, biases=[0.5], seeds=1, nll=False)


def test_sentences_are_not_in_the_embedded_training_texts():
  from handwriting_jax.data import hershey

  train_texts, _ = hershey.corpus_texts(synthesis_config.get_config("small").data.embedded)
  assert report_lib.overlap(report_lib.SENTENCES, train_texts) == []
  assert all(27 <= len(s) <= 35 for s in report_lib.SENTENCES)


def test_save_styles_keeps_the_most_legible_distinct_lines(tmp_path):
  lines = [np.full((3, 3), i, np.float32) for i in range(4)]
  result = {
    "per_line": [
      {"text": "a", "cer": 0.5},
      {"text": "b", "cer": 0.1},
      {"text": "b", "cer": 0.0},
      {"text": "c", "cer": 0.2},
    ],
    "_strokes": lines,
  }
  paths = report_lib.save_styles(str(tmp_path), result, 2)
  assert [os.path.basename(p) for p in paths] == ["style_0.npz", "style_1.npz"]
  got = [writer_lib.load_style(p) for p in paths]
  assert [t for _, t in got] == ["b", "c"] and got[0][0][0, 0] == 2 and got[1][0][0, 0] == 3
  assert writer_lib.style_names(str(tmp_path)) == ["style_0", "style_1"]


def test_another_sentence_list_replaces_the_built_in_ones(workdir, tmp_path):
  """--sentences_file / --digit_sentences_file: comments and blank lines skipped, spaces folded; those sentences are
  written and reported; an empty file, a missing file and a sentence the writer
  cannot write are one error each, before anything is written."""
  own = tmp_path / "own.txt"
  own.write_text("# mine\n\n  ab   cd \nef gh\n", encoding="utf-8")
  assert report_lib.read_sentences(str(own)) == ["ab cd", "ef gh"]
  out = str(tmp_path / "eval")
  result = report_lib.evaluate(
    workdir, None, biases=[1.0], seeds=1, out_dir=out, nll=False, sentences=["ab cd", "ef gh"], digit_sentences=["a1"]
  )
  assert [line["text"] for line in result["legibility"][0]["per_line"]] == ["ab cd", "ef gh"]
  assert result["sentences"] == ["ab cd", "ef gh"] and result["digits"]["lines"] == 1
  only_everyday = report_lib.evaluate(
    workdir, None, biases=[1.0], seeds=1, out_dir=str(tmp_path / "e1"), nll=False, sentences=["ab"], digit_sentences=()
  )
  assert "digits" not in only_everyday and not glob.glob(str(tmp_path / "e1" / "digits_*"))
  assert only_everyday["legibility"][0]["lines"] == 1
  (tmp_path / "empty.txt").write_text("# nothing\n\n", encoding="utf-8")
  for path, match in ((tmp_path / "empty.txt", "holds no sentence"), (tmp_path / "none.txt", "none.txt")):
    with pytest.raises(report_lib.EvaluateError, match=match):
      report_lib.read_sentences(str(path))
  with pytest.raises(UnknownCharactersError, match="the sentences to write"):
    report_lib.evaluate(workdir, None, biases=[1.0], seeds=1, out_dir=str(tmp_path / "e2"), nll=False,
                        sentences=["price: 5€"])  # fmt: skip
  assert not os.path.exists(tmp_path / "e2" / "report.json")
