"""Tests of handwriting_jax.data.dataset.load_dataset and the .npz cache (handwriting_jax.data.cache)."""

import os
import re
import shutil
import subprocess
import sys
import types

import chex
import numpy as np
import pytest

from handwriting_jax.config import defaults, validation
from handwriting_jax.data import cache as cache_lib
from handwriting_jax.data import dataset, iam, strokes
from handwriting_jax.errors import ConfigError

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "iam")


def iam_config(tmp_path, root=FIXTURE, **overrides):
  """config.data for the IAM fixture with a private cache folder."""
  cfg = defaults.data_config()
  cfg.source = "iam"
  cfg.iam_path = str(root)
  cfg.cache_dir = str(tmp_path / "cache")
  for k, v in overrides.items():
    cfg[k] = v
  return cfg


def load(cfg):
  """load_dataset without a progress bar."""
  return dataset.load_dataset(cfg, progress=False)


def cache_files(tmp_path):
  """The .npz files of the private cache folder."""
  folder = tmp_path / "cache"
  return sorted(p for p in os.listdir(folder) if p.endswith(".npz")) if folder.exists() else []


def assert_same(a, b):
  """Two Datasets hold the same lines, texts, ids, alphabet and statistics."""
  for split in ("train", "valid"):
    x, y = getattr(a, split), getattr(b, split)
    assert x.texts == y.texts and x.ids == y.ids
    assert len(x.strokes) == len(y.strokes)
    for p, q in zip(x.strokes, y.strokes):
      np.testing.assert_array_equal(p, q)
  assert a.alphabet == b.alphabet
  np.testing.assert_array_equal(a.stats.std, b.stats.std)
  np.testing.assert_array_equal(a.stats.mean, b.stats.mean)


def test_iam_dataset(tmp_path):
  ds = load(iam_config(tmp_path))
  assert ds.train.ids == ["a01-000u-01", "a01-000u-02", "b01-010z-01"]
  assert ds.valid.texts == ["Labour life", "Peers is"]
  assert ds.alphabet.chars == "".join(sorted(set("".join(ds.train.texts))))
  s = ds.summary
  assert (s["train_lines"], s["valid_lines"], s["skipped_forms"], s["missing_forms"]) == (3, 2, 1, 1)
  assert s["repeated_points"] == 1  # a01-000u-01
  assert s["split_jumps"] == 1  # b01-010z-01
  assert s["unknown_chars_valid"] == sum(c not in ds.alphabet.chars for c in "".join(ds.valid.texts))
  assert s["cache_hit"] is False
  chex.assert_shape(ds.train.strokes[0], (8, 3))  # 9 raw points less the repeated one
  # Normalised by the training statistics: raw training offsets have unit std; mapping back is exact-ish.
  flat = np.concatenate(ds.train.strokes)
  np.testing.assert_allclose(np.sqrt(np.mean(flat[:, :2] ** 2, axis=0)), 1.0, rtol=1e-5)
  raw = iam.read_iam(FIXTURE, progress=False).valid.lines[0]
  np.testing.assert_allclose(ds.stats.denormalise(ds.valid.strokes[0]), raw, atol=1e-4)
  for line in ds.train.strokes + ds.valid.strokes:
    assert line.dtype == np.float32 and line[-1, 2] == 1.0


def test_cache_hit_equals_fresh_parse(tmp_path):
  cfg = iam_config(tmp_path)
  fresh = load(cfg)
  assert len(cache_files(tmp_path)) == 1
  cached = load(cfg)
  assert cached.summary["cache_hit"] is True
  assert_same(fresh, cached)
  assert {k: v for k, v in cached.summary.items() if k != "cache_hit"} == {
    k: v for k, v in fresh.summary.items() if k != "cache_hit"
  }


def test_cache_is_a_plain_npz(tmp_path):
  load(iam_config(tmp_path))
  (name,) = cache_files(tmp_path)
  assert re.match(rf"iam-v{cache_lib.CACHE_VERSION}-[0-9a-f]{{20}}\.npz$", name)
  with np.load(tmp_path / "cache" / name, allow_pickle=False) as z:
    assert z["train/points"].dtype == np.float32 and z["train/texts"].dtype.kind == "U"
    assert int(z["train/lengths"].sum()) == len(z["train/points"])


def test_cache_key_follows_settings_and_files(tmp_path):
  root = tmp_path / "iam"
  shutil.copytree(FIXTURE, root)
  load(iam_config(tmp_path, root))
  load(iam_config(tmp_path, root, smoothing="savgol"))  # another setting: another file
  assert len(cache_files(tmp_path)) == 2
  line = root / "lineStrokes" / "a02" / "a02-062" / "a02-062-02.xml"
  line.write_bytes(line.read_bytes().replace(b'x="2125"', b'x="2135"'))
  ds = load(iam_config(tmp_path, root))  # a changed input file: parsed again
  assert ds.summary["cache_hit"] is False
  assert len(cache_files(tmp_path)) == 3
  assert ds.stats.denormalise(ds.valid.strokes[1])[-1, 0] == pytest.approx(16.0, abs=1e-3)


def test_unreadable_cache_is_rebuilt(tmp_path):
  cfg = iam_config(tmp_path)
  fresh = load(cfg)
  (name,) = cache_files(tmp_path)
  (tmp_path / "cache" / name).write_bytes(b"not an npz")
  with pytest.warns(UserWarning, match="unreadable data cache"):
    again = load(cfg)
  assert again.summary["cache_hit"] is False
  assert_same(fresh, again)
  assert load(cfg).summary["cache_hit"] is True


def test_cache_with_non_finite_strokes_is_rebuilt(tmp_path):
  cfg = iam_config(tmp_path)
  fresh = load(cfg)
  (name,) = cache_files(tmp_path)
  path = tmp_path / "cache" / name
  with np.load(path, allow_pickle=False) as z:
    arrays = dict(z)
  arrays["train/points"][3, 0] = np.nan
  with open(path, "wb") as f:
    np.savez(f, **arrays)
  with pytest.warns(UserWarning, match="unreadable data cache .*non-finite points"):
    again = load(cfg)
  assert again.summary["cache_hit"] is False
  assert_same(fresh, again)


def test_cache_round_trip_with_empty_split(tmp_path):
  corpus = cache_lib.CachedCorpus(
    splits={
      "train": cache_lib.CachedSplit(
        lines=[np.ones((3, 3), np.float32), np.zeros((1, 3), np.float32)], texts=["ab ", ""], ids=["x-01", "x-02"]
      ),
      "valid": cache_lib.CachedSplit(lines=[], texts=[], ids=[]),
    },
    counts={"forms": 2, "skipped_forms": 0},
  )
  path = str(tmp_path / "c.npz")
  cache_lib.save(path, corpus)
  back = cache_lib.load(path)
  assert back.counts == corpus.counts
  assert back.splits["train"].texts == ["ab ", ""] and back.splits["valid"].lines == []
  np.testing.assert_array_equal(back.splits["train"].lines[0], corpus.splits["train"].lines[0])
  chex.assert_shape(back.splits["train"].lines[1], (1, 3))


def test_jump_drop_and_limits_are_counted(tmp_path):
  s = load(iam_config(tmp_path, jump_mode="drop")).summary
  assert (s["dropped_jump_lines"], s["train_lines"]) == (1, 2)
  s = load(iam_config(tmp_path, max_points=7)).summary  # a01-000u-01 keeps 8 points
  assert (s["dropped_long_lines"], s["train_lines"], s["valid_lines"]) == (1, 2, 2)
  s = load(iam_config(tmp_path, max_chars=11)).summary  # "A MOVE to stop", "Mr. Gaitskell"
  assert (s["dropped_long_texts"], s["train_lines"]) == (2, 1)


def test_configured_alphabet_counts_unknown(tmp_path):
  ds = load(iam_config(tmp_path, alphabet="abcdefghijklmnopqrstuvwxyz "))
  assert ds.alphabet.chars == "abcdefghijklmnopqrstuvwxyz "
  assert ds.summary["unknown_chars_train"] == sum(not (c.islower() or c == " ") for c in "".join(ds.train.texts))
  assert ds.summary["unknown_chars_train"] > 0


def test_strict_load_fails_on_malformed_file(tmp_path):
  root = tmp_path / "iam"
  shutil.copytree(FIXTURE, root)
  line = root / "lineStrokes" / "b01" / "b01-010" / "b01-010z-01.xml"
  line.write_bytes(line.read_bytes()[:300])
  with pytest.warns(iam.IAMFormatWarning, match="b01-010z-01.xml"):
    assert load(iam_config(tmp_path, root)).summary["malformed_files"] == 1
  with pytest.raises(iam.IAMFormatError, match=r"b01-010z-01.xml"):
    load(iam_config(tmp_path, root, strict=True))


@pytest.mark.parametrize(
  "field,value,pattern",
  [
    ("source", "mnist", "config.data.source"),
    ("jump_mode", "lift", "config.data.jump_mode"),
    ("savgol_window", 4, "config.data.savgol_window"),
  ],
)
def test_bad_fields_name_the_field(field, value, pattern):
  """The data group alone is checked by validation.validate_data, as commands that only load data call it."""
  cfg = defaults.data_config()
  cfg.smoothing = "savgol"
  validation.validate_data(cfg)
  cfg[field] = value
  with pytest.raises(validation.ConfigError, match=pattern):
    validation.validate_data(cfg)


def test_load_dataset_refuses_an_unknown_source():
  cfg = defaults.data_config()
  cfg.source = "mnist"
  with pytest.raises(ValueError, match="'mnist'"):
    load(cfg)


def test_iam_without_path_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match=r"config.data.iam_path is empty"):
    load(iam_config(tmp_path, root=""))
  with pytest.raises(ValueError, match=re.escape(str(tmp_path / "none")) + ".*lineStrokes-all.tar.gz"):
    load(iam_config(tmp_path, root=tmp_path / "none"))


def fake_corpus(cfg):
  """A stand-in for hershey.generate_corpus: raw offsets with a repeated point, texts, by cfg.seed."""
  rng = np.random.default_rng(cfg.seed)

  def line(t):
    off = np.zeros((t, 3), np.float32)
    off[1:, :2] = rng.integers(1, 20, size=(t - 1, 2))  # never zero: only the planted repeat
    off[2, :2] = 0.0  # a repeated point
    off[t // 2, 2] = off[-1, 2] = 1.0
    return off

  train = [line(int(t)) for t in rng.integers(5, 40, size=cfg.num_lines)]
  valid = [line(int(t)) for t in rng.integers(5, 40, size=cfg.valid_lines)]
  return train, [f"line {i}" for i in range(len(train))], valid, [f"new {i}!" for i in range(len(valid))]


def test_embedded_source_with_a_fake_generator(monkeypatch):
  fake = types.ModuleType("handwriting_jax.data.hershey")
  fake.generate_corpus = fake_corpus
  fake.corpus_writers = lambda cfg: ([i % 3 for i in range(cfg.num_lines)], [i % 2 for i in range(cfg.valid_lines)])
  monkeypatch.setitem(sys.modules, "handwriting_jax.data.hershey", fake)
  monkeypatch.setattr("handwriting_jax.data.hershey", fake, raising=False)
  cfg = defaults.data_config()
  cfg.embedded.num_lines, cfg.embedded.valid_lines = 20, 5
  ds = load(cfg)
  assert (len(ds.train), len(ds.valid)) == (20, 5)
  assert ds.summary["repeated_points"] == 25
  assert ds.summary["unknown_chars_valid"] == 5 * 2  # "w" and "!" are not in the training texts
  assert ds.summary["cache_hit"] is None
  raw = fake_corpus(cfg.embedded)[0]
  for norm, line in zip(ds.train.strokes, raw):
    chex.assert_shape(norm, (len(line) - 1, 3))
    np.testing.assert_allclose(
      strokes.offsets_to_points(ds.stats.denormalise(norm))[-1], strokes.offsets_to_points(line)[-1], atol=1e-3
    )


def test_embedded_source_with_the_real_generator():
  pytest.importorskip("handwriting_jax.data.hershey")
  cfg = defaults.data_config()
  cfg.embedded.num_lines, cfg.embedded.valid_lines, cfg.embedded.max_words = 16, 4, 2
  ds = load(cfg)
  assert (len(ds.train), len(ds.valid)) == (16, 4)
  for line in ds.train.strokes + ds.valid.strokes:
    assert line.dtype == np.float32 and line.shape[1] == 3 and line[-1, 2] == 1.0
    assert np.all(np.isfinite(line))
  assert_same(ds, load(cfg))  # deterministic from the seed


def test_one_splits_file_trains_like_the_folder(tmp_path):
  out = tmp_path / "iam-splits.npz"
  proc = subprocess.run(
    [sys.executable, "-m", "handwriting_jax.export_iam", f"--iam_path={FIXTURE}", f"--out={out}"],
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert proc.returncode == 0 and "wrote" in proc.stdout, proc.stdout + proc.stderr
  with np.load(out, allow_pickle=False) as z:  # compressed, no pickle
    assert z["train/points"].dtype == np.float32
  folder = load(iam_config(tmp_path / "a"))
  single = load(iam_config(tmp_path / "b", out))
  assert single.summary["cache_hit"] is False
  assert_same(folder, single)
  assert {k: v for k, v in single.summary.items() if k not in ("cache_hit", "line")} == {
    k: v for k, v in folder.summary.items() if k not in ("cache_hit", "line")
  }
  assert load(iam_config(tmp_path / "b", out)).summary["cache_hit"] is True
  assert_same(load(iam_config(tmp_path / "c", out, downsample=2)), load(iam_config(tmp_path / "d", downsample=2)))


def test_a_file_that_is_not_a_splits_file_is_named(tmp_path):
  bogus = tmp_path / "other.npz"
  np.savez(bogus, x=np.zeros(3))
  with pytest.raises(iam.IAMFormatError, match=rf"{re.escape(str(bogus))}: not a"):
    load(iam_config(tmp_path, bogus))


def test_no_validation_line_is_one_error_naming_the_split(tmp_path):
  """Every validation form absent from the data: refused while loading, in words, not deep in the batch iterator."""
  root = tmp_path / "iam"
  shutil.copytree(FIXTURE, root)
  (root / "testset_v.txt").write_text(" z98-000\n")  # a form the data does not hold
  with (
    pytest.warns(iam.IAMFormatWarning, match="have no line files"),
    pytest.raises(ConfigError, match=r"no validation lines left.*testset_v\.txt"),
  ):
    load(iam_config(tmp_path, root=str(root)))
