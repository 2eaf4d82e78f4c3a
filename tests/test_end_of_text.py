"""The end-of-text symbol (`data.end_of_text`): the move and symbol appended to training lines, the training and
validation batches, the sampler reading the symbol, a trained writer growing it, and the texts that may not hold it."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from configs import synthesis as synthesis_config
from handwriting_jax.config import defaults
from handwriting_jax.data import batches as batches_lib
from handwriting_jax.data import dataset as dataset_lib
from handwriting_jax.data import end_of_text
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.evaluation import report as report_lib
from handwriting_jax.model import networks
from handwriting_jax.model import sampling as sample
from handwriting_jax.training import checkpoint as ckpt_lib
from handwriting_jax.training import loop as train
from handwriting_jax.training import optim
from handwriting_jax.training import step as step_lib
from handwriting_jax.writing import adaptation
from handwriting_jax.writing import writer as writer_lib

ALPHABET = Alphabet(" abcd")
END = end_of_text.with_end(ALPHABET)
STATS = strokes_lib.NormStats(mean=np.array([0.5, -0.25], np.float32), std=np.array([2.0, 4.0], np.float32))


def _line(rng: np.random.Generator, n: int) -> np.ndarray:
  """A raw line of `n` offsets with a few pen lifts, the last point lifting the pen."""
  line = np.concatenate([rng.normal(1.0, 1.0, (n, 2)), rng.random((n, 1)) < 0.2], axis=1).astype(np.float32)
  line[-1, 2] = 1.0
  return line


def test_the_symbol_is_one_id_after_the_others():
  assert not end_of_text.has_end(ALPHABET) and end_of_text.has_end(END)
  assert END.size == ALPHABET.size + 1 and end_of_text.with_end(END) == END
  np.testing.assert_array_equal(END.encode("abc d"), ALPHABET.encode("abc d"))
  assert END.encode(end_of_text.END_CHAR)[0] == ALPHABET.size
  assert end_of_text.conditioned("ab", END) == "ab" + end_of_text.END_CHAR
  assert end_of_text.conditioned("ab", ALPHABET) == "ab"
  assert end_of_text.written_chars(END) == ALPHABET.chars


def test_each_line_gains_a_pen_up_move_of_its_mean_advance_per_character():
  rng = np.random.default_rng(0)
  raw = [_line(rng, 30), _line(rng, 7)]
  texts = ["ab cd", "a"]
  lines, out_texts = end_of_text.appended([STATS.normalise(x) for x in raw], texts, END, STATS)
  assert out_texts == ["ab cd\x03", "a\x03"]
  same, same_texts = end_of_text.appended([STATS.normalise(x) for x in raw], texts, ALPHABET, STATS)
  assert same_texts == texts and all(np.array_equal(a, STATS.normalise(b)) for a, b in zip(same, raw))
  for line, raw_line, text in zip(lines, raw, texts):
    assert line.shape == (len(raw_line) + 1, 3)
    np.testing.assert_allclose(line[:-1], STATS.normalise(raw_line), rtol=1e-6)
    x = np.cumsum(raw_line[:, 0].astype(np.float64))
    move = STATS.denormalise(line[-1:])[0]
    np.testing.assert_allclose(move, [(x.max() - x.min()) / len(text), 0.0, 1.0], rtol=1e-5, atol=1e-6)


def _tiny_config(**data_fields):
  cfg = defaults.apply_variant(defaults.base_config("synthesis"), "tiny")
  cfg.data.update_from_flattened_dict({"embedded.num_lines": 48, "embedded.valid_lines": 8, "num_buckets": 1})
  cfg.data.update(data_fields)
  cfg.train.sample_every = 0
  return cfg


def test_training_and_validation_batches_end_in_the_symbol_and_the_move():
  cfg = _tiny_config(end_of_text=True, pieces_until=5)
  data = dataset_lib.load_dataset(cfg.data, progress=False)
  assert end_of_text.has_end(data.alphabet)
  end_id = data.alphabet.encode(end_of_text.END_CHAR)[0]
  batches = train.CurriculumBatches(data.train, data.alphabet, cfg.data, data.stats)
  for step in (0, 10):  # word pieces, then whole lines
    batch = batches.next(step)
    for b in range(len(batch["chars"])):
      u, t = int(batch["char_mask"][b].sum()), int(batch["mask"][b].sum())
      assert batch["chars"][b, u - 1] == end_id and end_id not in batch["chars"][b, : u - 1]
      last = data.stats.denormalise(batch["targets"][b, t - 1 : t])[0]
      assert last[2] == 1.0 and last[0] > 0 and abs(last[1]) < 1e-4  # a level pen-up move to the right
      assert batch["targets"][b, t - 2, 2] == 1.0  # the text's last stroke ended before it
  for batch in train.validation_batches(data, cfg.data, 1):
    u = batch["char_mask"].sum(axis=1).astype(int)
    np.testing.assert_array_equal(batch["chars"][np.arange(len(u)), u - 1], end_id)


def test_a_grown_network_computes_what_it_did_on_the_old_characters():
  cfg = defaults.apply_variant(defaults.base_config("synthesis"), "tiny").model
  small = networks.build_network(cfg, ALPHABET.size, 0)
  grown = networks.build_network(cfg, ALPHABET.size, 0)
  networks.add_characters(grown, 1)
  assert grown.alphabet_size == END.size
  rng = np.random.default_rng(1)
  inputs = rng.normal(size=(2, 12, 3)).astype(np.float32)
  chars = np.array([[3, 4, 2, 5], [6, 3, 0, 0]], np.int32)
  mask = (chars > 0).astype(np.float32)
  np.testing.assert_allclose(np.asarray(grown(inputs, chars, mask)[0]), np.asarray(small(inputs, chars, mask)[0]))


def test_the_sampler_reads_the_symbol_after_the_text_and_reports_the_text_without_it():
  cfg = defaults.apply_variant(defaults.base_config("synthesis"), "tiny").model
  model = networks.build_network(cfg, END.size, 0)
  texts = ["abc", "d a"]
  out = sample.sample(model, jax.random.key(0), texts=texts, alphabet=END, bias=0.5, max_steps_per_char=8)
  assert out.texts == texts
  assert out.line_phi(0).shape[1] == 3
  # The end symbol's input rows change what is written only if the sampler feeds the symbol to the window.
  for layer in model.layers:
    w_x = np.asarray(layer.w_x[...]).copy()
    w_x[-1] += 5.0
    layer.w_x = nnx.Param(w_x)
  moved = sample.sample(model, jax.random.key(0), texts=texts, alphabet=END, bias=0.5, max_steps_per_char=8)
  assert not np.allclose(out.strokes_BxTx3, moved.strokes_BxTx3)
  same = sample.sample(model, jax.random.key(0), texts=texts, alphabet=ALPHABET, bias=0.5, max_steps_per_char=8)
  assert not np.allclose(moved.strokes_BxTx3, same.strokes_BxTx3)  # without the symbol, as before the change
  with pytest.raises(sample.SamplingError, match="end-of-text"):
    sample.sample(model, jax.random.key(0), texts=["ab\x03"], alphabet=END)


def test_a_trained_writer_learns_the_symbol_on_top_and_writes(tmp_path):
  src = _tiny_config()
  src.train.update(num_steps=2, checkpoint_every=2, eval_every=2)
  train.train_and_evaluate(src, str(tmp_path / "src"))
  dst = _tiny_config(end_of_text=True)
  dst.train.update(num_steps=2, checkpoint_every=2, eval_every=2, init_from=str(tmp_path / "src"))
  train.train_and_evaluate(dst, str(tmp_path / "dst"))
  before = writer_lib.load_writer(str(tmp_path / "src"))
  writer = writer_lib.load_writer(str(tmp_path / "dst"))
  assert end_of_text.has_end(writer.alphabet) and writer.model.alphabet_size == before.model.alphabet_size + 1
  with open(os.path.join(tmp_path, "dst", "train.log"), encoding="utf-8") as f:
    assert "initialised from" in f.read()
  text = "".join(c for c in "a bad cab" if c in writer.alphabet.chars)
  out = sample.sample(writer.model, jax.random.key(0), texts=[text], alphabet=writer.alphabet, bias=1.0)
  assert out.lengths_B[0] >= 1 and np.all(np.isfinite(out.lines[0]))
  ink = writer.stats.denormalise(out.lines[0])
  adaptation.check_lines(writer, [(ink, text)])
  batch = adaptation.make_batch(writer, [(ink, text)])  # adaptation trains on the symbol as training did
  assert batch["chars"][0, len(text)] == writer.alphabet.encode(end_of_text.END_CHAR)[0]
  assert batch["mask"][0].sum() == len(ink) + 1
  with pytest.raises(adaptation.AdaptError, match="end-of-text"):
    adaptation.check_lines(writer, [(ink, text + end_of_text.END_CHAR)])


def test_validation_nll_reads_the_symbol_and_counts_the_ink_only(tmp_path):
  config = synthesis_config.get_config("tiny")
  config.data.end_of_text = True
  alphabet = end_of_text.with_end(Alphabet(" abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,'!?-"))
  model = networks.create_model(config, alphabet.size)
  _, state = step_lib.create_train_state(model, optim.make_optimizer(config.optim, config.train.num_steps))
  ckpt = ckpt_lib.Checkpointer(str(tmp_path))
  meta = {"config": json.loads(config.to_json_best_effort()), "alphabet": alphabet.chars, "norm": STATS.to_arrays()}
  ckpt.save(5, state, meta)
  ckpt.close()
  writer = writer_lib.load_writer(str(tmp_path))
  valid = report_lib.load_validation(writer)
  strokes, texts = valid.strokes[:12], valid.texts[:12]
  got = report_lib.validation_nll(writer, strokes, texts)
  graphdef, params = nnx.split(writer.model, nnx.Param)
  # One line per batch, padded to one shape (the padding is masked out), so the reference compiles once.
  max_t, max_u = max(len(x) for x in strokes) + 1, max(len(x) for x in texts) + 1
  batch_loss = jax.jit(step_lib.batch_loss, static_argnums=0)
  total, total_without = 0.0, 0.0
  for line, text in zip(strokes, texts):
    (with_move,), (read,) = end_of_text.appended([line], [text], writer.alphabet, writer.stats)
    ids = writer.alphabet.encode(read, on_unknown="map")
    batch = batches_lib.pad_batch([with_move], [ids], 1, max_t, max_u)
    batch["mask"][0, len(with_move) - 1] = 0.0  # the end move is not counted
    total += float(batch_loss(graphdef, params, batch)[0])
    bare = batches_lib.pad_batch([line], [ids[:-1]], 1, max_t, max_u)
    total_without += float(batch_loss(graphdef, params, bare)[0])
  assert got["steps"] == sum(len(x) for x in strokes)
  np.testing.assert_allclose(got["nats_per_sequence"], total / len(strokes), rtol=1e-4)
  assert abs(total - total_without) > 1.0  # the symbol is read, so the ink's NLL differs (nats, over all lines)
