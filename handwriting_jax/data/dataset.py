"""`load_dataset(config.data)`: the training and validation splits, normalised, with alphabet and statistics.

Dispatches on `config.data.source`: "embedded" generates the Hershey corpus (`hershey.generate_corpus`),
"iam" reads IAM-OnDB (`iam.read_iam`) through the `.npz` cache. Both then go through the same steps:
per-line preprocessing (`strokes.preprocess_line`), the `max_points` / `max_chars` limits, `NormStats`
fitted on the training split and applied to both, and the alphabet (`Alphabet.from_config`). With
`data.synthetic_lines`, digit-rich lines (`synthetic.py`) then join the IAM training split, after the statistics and
the alphabet were taken from the real lines; `data.end_of_text` adds the end symbol to the alphabet (lines and texts
gain it as batches are made: `end_of_text.appended`). One summary line is logged; the numbers are in `Dataset.summary`.
"""

import collections
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from handwriting_jax.data import cache as cache_lib
from handwriting_jax.data import end_of_text
from handwriting_jax.data import iam as iam_lib
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.errors import ConfigError

SOURCES = ("embedded", "iam")
_SPLITS = ("train", "valid")


@dataclasses.dataclass(frozen=True)
class Split:
  """Lines of one split: normalised offsets `[T, 3]` float32, their texts and (IAM) line ids."""

  strokes: list[np.ndarray]
  texts: list[str]
  ids: list[str] = dataclasses.field(default_factory=list)

  def __len__(self) -> int:
    """Number of lines."""
    return len(self.strokes)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Both splits, the alphabet, the normalisation (to undo it when sampling) and the load summary."""

  train: Split
  valid: Split
  alphabet: Alphabet
  stats: strokes_lib.NormStats
  summary: dict[str, Any]


def prepare_split(
  lines: Sequence[np.ndarray], texts: Sequence[str], ids: Sequence[str], settings: strokes_lib.Preprocessing
) -> tuple[cache_lib.CachedSplit, collections.Counter]:
  """Preprocess raw lines and apply the point / character limits; returns (kept lines, counts)."""
  if not len(lines) == len(texts) == len(ids):
    raise ValueError(f"got {len(lines)} lines, {len(texts)} texts and {len(ids)} ids")
  counts = collections.Counter()
  out = cache_lib.CachedSplit(lines=[], texts=[], ids=[])
  for line, text, line_id in zip(lines, texts, ids):
    if len(text) > settings.max_chars:
      counts["dropped_long_texts"] += 1
      continue
    if len(line) == 0:
      counts["dropped_empty_lines"] += 1
      continue
    line, line_counts = strokes_lib.preprocess_line(line, settings)
    counts.update(line_counts)
    if line is not None:
      out.lines.append(line)
      out.texts.append(text)
      out.ids.append(line_id)
  return out, counts


def _load_embedded(data_cfg: Any, settings: strokes_lib.Preprocessing) -> cache_lib.CachedCorpus:
  """Generate the Hershey corpus and preprocess it."""
  from handwriting_jax.data import hershey  # only this source needs it

  train_lines, train_texts, valid_lines, valid_texts = hershey.generate_corpus(data_cfg.embedded)
  train_writers, valid_writers = hershey.corpus_writers(data_cfg.embedded)
  raw = {"train": (train_lines, train_texts, train_writers), "valid": (valid_lines, valid_texts, valid_writers)}
  splits, counts = {}, collections.Counter()
  for name, (lines, texts, writers) in raw.items():
    # `embedded-valid-w3-17`: line 17 of the split, by synthetic writer 3 (its "form", as IAM-OnDB's a01-000u-03)
    ids = [f"embedded-{name}-w{w}-{i}" for i, w in enumerate(writers)]
    splits[name], split_counts = prepare_split(lines, texts, ids, settings)
    counts.update(split_counts)
  return cache_lib.CachedCorpus(splits=splits, counts=dict(counts))


def _load_iam(
  data_cfg: Any, settings: strokes_lib.Preprocessing, progress: bool
) -> tuple[cache_lib.CachedCorpus, bool]:
  """Read IAM-OnDB (its folder, or one splits file) through the cache; returns (corpus, cache_hit)."""
  if iam_lib.is_splits_file(data_cfg.iam_path):
    source = os.path.abspath(os.path.expanduser(data_cfg.iam_path))
    fingerprint = [(source, os.path.getsize(source), os.stat(source).st_mtime_ns)]

    def read() -> iam_lib.IamCorpus:
      return iam_lib.read_splits_file(source)
  else:
    fingerprint = iam_lib.fingerprint(iam_lib.find_inputs(data_cfg.iam_path))

    def read() -> iam_lib.IamCorpus:
      return iam_lib.read_iam(data_cfg.iam_path, strict=bool(data_cfg.strict), progress=progress)

  key = cache_lib.cache_key(fingerprint, {**settings.as_dict(), "strict": bool(data_cfg.strict)})
  path = cache_lib.cache_path(cache_lib.cache_dir(data_cfg), "iam", key)

  def build() -> cache_lib.CachedCorpus:
    corpus = read()
    splits, counts = {}, collections.Counter(corpus.counts)
    for name in _SPLITS:
      raw = getattr(corpus, name)
      splits[name], split_counts = prepare_split(raw.lines, raw.texts, raw.ids, settings)
      counts.update(split_counts)
    return cache_lib.CachedCorpus(splits=splits, counts=dict(counts))

  corpus, hit = cache_lib.load_or_build(path, build)
  logging.info("IAM data %s %s", "read from the cache" if hit else "parsed and cached in", path)
  return corpus, hit


def load_dataset(data_cfg: Any, progress: bool = True) -> Dataset:
  """Load `config.data.source`, preprocess, normalise by training statistics, build the alphabet (`data_cfg` as
  validation validates it: `validation.validate_data`)."""
  if data_cfg.source not in SOURCES:
    raise ValueError(f"unknown data source {data_cfg.source!r}; expected one of {SOURCES}")
  settings = strokes_lib.Preprocessing.from_config(data_cfg)
  cache_hit = None
  if data_cfg.source == "embedded":
    corpus = _load_embedded(data_cfg, settings)
  else:
    corpus, cache_hit = _load_iam(data_cfg, settings, progress)
  train, valid = corpus.splits["train"], corpus.splits["valid"]
  counts = collections.Counter(corpus.counts)
  if not train.lines:
    raise ConfigError(
      f"no training lines left after preprocessing (config.data.source={data_cfg.source!r}); "
      f"counts: {dict(counts)}; check config.data.max_points / max_chars / jump_mode"
    )
  if not valid.lines:
    raise ConfigError(
      f"no validation lines left after preprocessing (config.data.source={data_cfg.source!r}); counts: "
      f"{dict(counts)}; check the validation split list (testset_v.txt) and that its forms are in the data"
    )
  stats = strokes_lib.NormStats.fit(train.lines, normalise_mean=data_cfg.normalise_mean)
  alphabet = Alphabet.from_config(data_cfg, train.texts)
  if data_cfg.get("end_of_text", False):
    alphabet = end_of_text.with_end(alphabet)
  num_real = len(train.lines)
  if data_cfg.get("synthetic_lines", 0):
    train = _with_synthetic(train, data_cfg, settings, alphabet)
  summary = {
    "source": data_cfg.source,
    "train_lines": len(train.lines),
    "synthetic_lines": len(train.lines) - num_real,
    "valid_lines": len(valid.lines),
    "train_points": int(sum(len(x) for x in train.lines)),
    "alphabet_size": len(alphabet.chars),
    "unknown_chars_train": sum(alphabet.count_unknown(t) for t in train.texts),
    "unknown_chars_valid": sum(alphabet.count_unknown(t) for t in valid.texts),
    "cache_hit": cache_hit,
    "norm_mean": stats.mean.tolist(),
    "norm_std": stats.std.tolist(),
  }
  for name in (
    "forms",
    "skipped_forms",
    "missing_forms",
    "duplicate_forms",
    "malformed_files",
    "repeated_points",
    "split_jumps",
    "dropped_jump_lines",
    "dropped_long_lines",
    "dropped_long_texts",
    "dropped_empty_lines",
  ):
    summary[name] = int(counts.get(name, 0))
  summary["line"] = summary_line(summary, settings)
  logging.info("%s", summary["line"])
  return Dataset(
    train=_normalised(train, stats), valid=_normalised(valid, stats), alphabet=alphabet, stats=stats, summary=summary
  )


def summary_line(summary: dict[str, Any], settings: strokes_lib.Preprocessing) -> str:
  """One human-readable line of the load summary."""
  s = summary
  dropped = s["dropped_jump_lines"] + s["dropped_long_lines"] + s["dropped_long_texts"] + s["dropped_empty_lines"]
  parts = [f"data ({s['source']}): {s['train_lines']} train / {s['valid_lines']} valid lines"]
  if s.get("synthetic_lines"):
    parts.append(f"{s['synthetic_lines']} of the training lines synthetic and digit-rich (data.synthetic_lines)")
  if s["source"] == "iam":
    parts.append(
      f"{s['skipped_forms']} forms skipped (line count mismatch), {s['missing_forms']} listed forms "
      f"missing, {s['malformed_files']} malformed files"
    )
  parts.append(
    f"{dropped} lines dropped ({s['dropped_jump_lines']} absurd jump, {s['dropped_long_lines']} over "
    f"max_points={settings.max_points}, {s['dropped_long_texts']} over max_chars={settings.max_chars})"
  )
  parts.append(f"{s['repeated_points']} repeated points removed, {s['split_jumps']} jumps split")
  parts.append(
    f"alphabet of {s['alphabet_size']} characters, unknown characters: {s['unknown_chars_train']} "
    f"train / {s['unknown_chars_valid']} valid"
  )
  return "; ".join(parts)


def _with_synthetic(
  train: cache_lib.CachedSplit,
  data_cfg: Any,
  settings: strokes_lib.Preprocessing,
  alphabet: Alphabet,
) -> cache_lib.CachedSplit:
  """`train` and `data.synthetic_lines` digit-rich lines at its scale (`synthetic.py`); ConfigError when the alphabet
  lacks a character they hold."""
  from handwriting_jax.data import synthetic  # only this option draws Hershey lines

  extra = synthetic.synthetic_split(
    int(data_cfg.synthetic_lines), synthetic.Scale.of(train, settings.downsample), settings, data_cfg.embedded
  )
  missing = sorted({c for t in extra.texts for c in t} - set(alphabet.chars) - {" "})
  if missing:
    raise ConfigError(
      f"config.data.synthetic_lines: the synthetic lines hold {''.join(missing)!r}, which the alphabet "
      f"(config.data.alphabet or the training texts) lacks; set it to 0 or add them to the alphabet"
    )
  return cache_lib.CachedSplit(
    lines=train.lines + extra.lines, texts=train.texts + extra.texts, ids=train.ids + extra.ids
  )


def _normalised(split: cache_lib.CachedSplit, stats: strokes_lib.NormStats) -> Split:
  """Normalise every line of a split (one vectorised pass over the concatenated lines)."""
  if not split.lines:
    return Split(strokes=[], texts=list(split.texts), ids=list(split.ids))
  lengths = np.asarray([len(x) for x in split.lines])
  flat = stats.normalise(np.concatenate(split.lines, axis=0))
  return Split(strokes=np.split(flat, np.cumsum(lengths)[:-1]), texts=list(split.texts), ids=list(split.ids))
