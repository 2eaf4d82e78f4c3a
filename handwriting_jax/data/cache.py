"""Versioned `.npz` cache of parsed, preprocessed lines (no pickle).

A cache file holds named splits of ragged lines and the counts of the load that built it. Each split is
stored as one concatenated float32 array `{split}/points` `[sum T, 3]` with int64 `{split}/lengths`, the
texts and line ids as fixed-width unicode arrays. The file name carries `CACHE_VERSION` and a hash of the
inputs (paths, sizes, mtimes) and the preprocessing settings, so any change to either parses afresh; a file
that cannot be read back is reported and rebuilt. Files are written to a temporary name and renamed, so an
interrupted write never leaves a half file under the real name.
"""

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

CACHE_VERSION = 2  # bump when the parser or the preprocessing changes what a cache file holds
DEFAULT_DIR = "~/.cache/handwriting_jax"


@dataclasses.dataclass
class CachedSplit:
  """Lines of one split: offsets `[T, 3]` float32, texts and line ids."""

  lines: list[np.ndarray]
  texts: list[str]
  ids: list[str]


@dataclasses.dataclass
class CachedCorpus:
  """Named splits and integer counts, as stored in one cache file."""

  splits: dict[str, CachedSplit]
  counts: dict[str, int]


def cache_dir(data_cfg: Any) -> str:
  """`config.data.cache_dir`, or ~/.cache/handwriting_jax when empty."""
  return os.path.expanduser(data_cfg.get("cache_dir", "") or DEFAULT_DIR)


def cache_key(fingerprint: Sequence[Sequence[Any]], settings: Mapping[str, Any]) -> str:
  """Hex digest of the cache version, input fingerprint (path, size, mtime rows) and settings."""
  h = hashlib.sha256()
  h.update(f"version={CACHE_VERSION}\n".encode())
  h.update(json.dumps(dict(settings), sort_keys=True, default=str).encode())
  for row in fingerprint:
    h.update(("\n" + "\t".join(str(x) for x in row)).encode("utf-8", "surrogateescape"))
  return h.hexdigest()


def cache_path(directory: str, prefix: str, key: str) -> str:
  """`{directory}/{prefix}-v{version}-{key[:20]}.npz`."""
  return os.path.join(directory, f"{prefix}-v{CACHE_VERSION}-{key[:20]}.npz")


def save(path: str, corpus: CachedCorpus, compressed: bool = False) -> None:
  """Write `corpus` to `path` atomically (temporary file, then rename); `compressed`: zip-deflate the arrays."""
  arrays = {
    "version": np.asarray(CACHE_VERSION, np.int64),
    "split_names": _strings(list(corpus.splits)),
    "count_names": _strings(list(corpus.counts)),
    "count_values": np.asarray([int(v) for v in corpus.counts.values()], np.int64),
  }
  for name, split in corpus.splits.items():
    if not len(split.lines) == len(split.texts) == len(split.ids):
      raise ValueError(f"split {name!r}: {len(split.lines)} lines, {len(split.texts)} texts, {len(split.ids)} ids")
    arrays[f"{name}/lengths"] = np.asarray([len(x) for x in split.lines], np.int64)
    arrays[f"{name}/points"] = (
      np.concatenate(split.lines, axis=0).astype(np.float32) if split.lines else np.zeros((0, 3), np.float32)
    )
    arrays[f"{name}/texts"] = _strings(split.texts)
    arrays[f"{name}/ids"] = _strings(split.ids)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      (np.savez_compressed if compressed else np.savez)(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def load(path: str) -> CachedCorpus:
  """Read a cache file written by `save` (ValueError if it is of another version or incomplete)."""
  with np.load(path, allow_pickle=False) as z:
    version = int(z["version"])
    if version != CACHE_VERSION:
      raise ValueError(f"{path}: cache version {version}, expected {CACHE_VERSION}")
    splits = {}
    for name in z["split_names"].tolist():
      lengths = z[f"{name}/lengths"]
      points = z[f"{name}/points"]
      if points.shape != (int(lengths.sum()), 3):
        raise ValueError(f"{path}: split {name!r} holds {points.shape[0]} points, lengths sum to {lengths.sum()}")
      if not np.all(np.isfinite(points)):
        raise ValueError(f"{path}: split {name!r} holds non-finite points")
      lines = np.split(points, np.cumsum(lengths)[:-1]) if len(lengths) else []
      splits[name] = CachedSplit(lines=lines, texts=z[f"{name}/texts"].tolist(), ids=z[f"{name}/ids"].tolist())
    counts = dict(zip(z["count_names"].tolist(), (int(v) for v in z["count_values"])))
  return CachedCorpus(splits=splits, counts=counts)


def load_or_build(path: str, build: Callable[[], CachedCorpus]) -> tuple[CachedCorpus, bool]:
  """The corpus cached at `path`, else `build()` it and cache it; returns (corpus, cache_hit)."""
  if os.path.exists(path):
    try:
      return load(path), True
    except Exception as e:  # noqa: BLE001  any unreadable file is simply rebuilt
      warnings.warn(f"unreadable data cache {path} ({e}); parsing the data again", stacklevel=2)
  corpus = build()
  try:
    save(path, corpus)
  except OSError as e:
    warnings.warn(f"could not write the data cache {path} ({e}); the next load parses again", stacklevel=2)
  return corpus, False


def _strings(items: Sequence[str]) -> np.ndarray:
  """A fixed-width unicode array (never an object array, so it loads without pickle)."""
  return np.asarray(list(items), dtype=np.str_) if len(items) else np.zeros((0,), dtype="<U1")
