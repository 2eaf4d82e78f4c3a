"""IAM-OnDB reader: line stroke files, their transcriptions and Graves' splits.

Inputs, all in one folder (`config.data.iam_path`; the data set is free after registering at
fki.tic.heia-fr.ch and must never be committed):
  * `lineStrokes-all.tar.gz` or its extracted `lineStrokes/`: `lineStrokes/a01/a01-000/a01-000u-01.xml`, one
    XML file per text line (`<WhiteboardCaptureSession>...<StrokeSet><Stroke ...><Point x= y= time=/>`,
    ISO-8859-1, y pointing down);
  * `ascii-all.tar.gz` or its extracted `ascii/`: `ascii/a01/a01-000/a01-000u.txt`, one file per form, whose
    lines after `CSR:` are the form's text lines, in the order of the line files' numbers;
  * the split lists `trainset.txt`, `testset_v.txt`, `testset_t.txt`, `testset_f.txt` (one form id per
    line, e.g. ` a01-000u`, leading spaces allowed; a line id such as `a01-000u-01` selects one line), in
    the folder or in its `task1/` subfolder.

Graves' splits: train = trainset + testset_t + testset_f, validation = testset_v. A form whose number of
text lines differs from its number of line files is skipped and counted; a malformed file (bad XML, empty
StrokeSet, missing or unreadable transcription) is a warning naming the file, or an `IAMFormatError` with
`strict=True`. Tarballs are read as one sequential stream each (no random access), and only the files of
listed forms are parsed.
"""

import bz2
import collections
import dataclasses
import gzip
import itertools
import lzma
import os
import re
import tarfile
import unicodedata
import warnings
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tqdm
from absl import logging

from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.errors import ConfigError, UserError

STROKES_TAR, STROKES_DIR = "lineStrokes-all.tar.gz", "lineStrokes"
ASCII_TAR, ASCII_DIR = "ascii-all.tar.gz", "ascii"
# Split list -> Graves' split (paper section 4.1 / 5: train on trainset + testset_t + testset_f).
SPLIT_LISTS = {"trainset.txt": "train", "testset_t.txt": "train", "testset_f.txt": "train", "testset_v.txt": "valid"}
SPLITS = ("train", "valid")
EXPECTED = (
  f"{STROKES_TAR} (or the extracted {STROKES_DIR}/), {ASCII_TAR} (or the extracted {ASCII_DIR}/) "
  f"and the split lists {', '.join(SPLIT_LISTS)} (in the folder or its task1/ subfolder)"
)

_LINE_FILE = re.compile(r"^(?P<form>.+)-(?P<num>\d+)\.xml$")
_ASCII_FILE = re.compile(r"^(?P<form>.+)\.txt$")
_LINE_ID = re.compile(r"^(?P<form>[^-\s]+-[^-\s]+)-(?P<num>\d+)$")


class IAMFormatError(UserError, ValueError):
  """A malformed IAM-OnDB file (raised with `strict=True`; otherwise an `IAMFormatWarning`)."""


class IAMFormatWarning(UserWarning):
  """A malformed IAM-OnDB file was skipped (the message names it)."""


@dataclasses.dataclass(frozen=True)
class IamInputs:
  """Where the IAM-OnDB pieces are: each a tarball or an extracted folder, plus the split lists."""

  root: str
  strokes: str  # lineStrokes-all.tar.gz or lineStrokes/
  ascii: str  # ascii-all.tar.gz or ascii/
  split_lists: dict[str, str]  # list file name -> path

  def paths(self) -> list[str]:
    """Every input path (what the cache key fingerprints)."""
    return [self.strokes, self.ascii] + [self.split_lists[name] for name in sorted(self.split_lists)]


@dataclasses.dataclass
class IamSplit:
  """The lines of one split: raw offsets in the fixed stroke format (y up, IAM units), texts and line ids."""

  lines: list[np.ndarray] = dataclasses.field(default_factory=list)
  texts: list[str] = dataclasses.field(default_factory=list)
  ids: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class IamCorpus:
  """Both splits and the reader's counts (`forms`, `skipped_forms`, `missing_forms`, `malformed_files`...)."""

  train: IamSplit
  valid: IamSplit
  counts: dict[str, int]


def is_splits_file(iam_path: str) -> bool:
  """True when `config.data.iam_path` names one splits file (written by `handwriting_jax.export_iam`)."""
  return os.path.isfile(os.path.expanduser(iam_path)) and iam_path.endswith(".npz")


def write_splits_file(corpus: IamCorpus, path: str) -> None:
  """Save both raw splits (IAM units, before any preprocessing) and the reader's counts as one compressed .npz."""
  from handwriting_jax.data import cache as cache_lib  # avoids a cycle

  splits = {
    name: cache_lib.CachedSplit(
      lines=getattr(corpus, name).lines, texts=getattr(corpus, name).texts, ids=getattr(corpus, name).ids
    )
    for name in SPLITS
  }
  cache_lib.save(
    path, cache_lib.CachedCorpus(splits=splits, counts={**corpus.counts, "splits_file": 1}), compressed=True
  )


def read_splits_file(path: str) -> IamCorpus:
  """The raw splits of a file written by `write_splits_file`; an IAMFormatError naming it if it is not one."""
  from handwriting_jax.data import cache as cache_lib

  try:
    corpus = cache_lib.load(os.path.expanduser(path))
  except Exception as e:  # noqa: BLE001  zip, npz and format errors alike
    raise IAMFormatError(f"{path}: not a readable IAM-OnDB splits file ({type(e).__name__}: {e})") from None
  if not corpus.counts.get("splits_file") or set(corpus.splits) != set(SPLITS):
    raise IAMFormatError(f"{path}: not an IAM-OnDB splits file (write one with python -m handwriting_jax.export_iam)")
  counts = {k: v for k, v in corpus.counts.items() if k != "splits_file"}
  return IamCorpus(
    **{
      name: IamSplit(list(corpus.splits[name].lines), list(corpus.splits[name].texts), list(corpus.splits[name].ids))
      for name in SPLITS
    },
    counts=counts,
  )


def find_inputs(iam_path: str) -> IamInputs:
  """Locate the tarballs / folders and split lists under `iam_path`; a clear ValueError when missing."""
  if not iam_path:
    raise ConfigError(
      f"config.data.iam_path is empty; with config.data.source='iam' set it to the folder holding {EXPECTED}"
    )
  root = os.path.expanduser(iam_path)
  if not os.path.isdir(root):
    raise ConfigError(
      f"config.data.iam_path={iam_path!r} is not a folder; it should hold {EXPECTED} (or name a "
      "splits .npz file written by python -m handwriting_jax.export_iam)"
    )
  missing = []

  def pick(folder: str, tarball: str) -> str:
    if os.path.isdir(os.path.join(root, folder)):  # extracted folders win over tarballs
      return os.path.join(root, folder)
    if os.path.isfile(os.path.join(root, tarball)):
      return os.path.join(root, tarball)
    missing.append(f"{tarball} or {folder}/")
    return ""

  strokes_path, ascii_path = pick(STROKES_DIR, STROKES_TAR), pick(ASCII_DIR, ASCII_TAR)
  split_lists = {}
  for name in SPLIT_LISTS:
    found = [p for p in (os.path.join(root, name), os.path.join(root, "task1", name)) if os.path.isfile(p)]
    if found:
      split_lists[name] = found[0]
    else:
      missing.append(name)
  if missing:
    raise ConfigError(f"config.data.iam_path={iam_path!r} lacks {', '.join(missing)}; it should hold {EXPECTED}")
  return IamInputs(root=root, strokes=strokes_path, ascii=ascii_path, split_lists=split_lists)


def fingerprint(inputs: IamInputs) -> list[tuple[str, int, int]]:
  """(path, size, mtime_ns) of every input file (folders walked): a change invalidates the cache."""
  out = []
  for path in inputs.paths():
    files = [path] if os.path.isfile(path) else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    for f in sorted(files):
      st = os.stat(f)
      out.append((os.path.abspath(f), st.st_size, st.st_mtime_ns))
  return out


def read_split_list(path: str) -> list[str]:
  """The ids of a split list, one per line (surrounding spaces and blank lines ignored)."""
  with open(path, encoding="latin-1") as f:
    return [s.strip() for s in f if s.strip()]


MAX_FILE_BYTES = 16 << 20  # one line or transcription file; IAM-OnDB's largest are well under 1 MB
# Whiteboard units: IAM-OnDB's points lie within about -100..9,000; a point further out than this is no pen stroke.
MAX_ABS_COORDINATE = 1e6
_DECLARED_ENCODING = re.compile(rb'^<\?xml[^>]*encoding="([A-Za-z0-9._-]+)"')
_POINT_RE = re.compile(rb'<Point x="(-?[0-9]+(?:\.[0-9]*)?)" y="(-?[0-9]+(?:\.[0-9]*)?)"')
_DOCUMENT_END = b"</WhiteboardCaptureSession>"


def _fast_strokes(data: bytes) -> list[np.ndarray] | None:
  """Strokes [n, 2] (x, -y) of a file in the usual IAM layout, read with byte searches and one regular expression
  (faster than ElementTree); None when the file deviates in any way, so that the strict parser decides."""
  if not data.rstrip().endswith(_DOCUMENT_END):
    return None
  start, end = data.find(b"<StrokeSet>"), data.find(b"</StrokeSet>")
  if start < 0 or end < start or data.find(b"<StrokeSet>", start + 1) >= 0:
    return None
  body = data[start:end]
  pieces = body.split(b"</Stroke>")
  if len(pieces) - 1 != body.count(b"<Stroke ") or pieces[-1].strip() != b"":
    return None
  strokes = []
  for piece in pieces[:-1]:
    points = _POINT_RE.findall(piece)
    if len(points) != piece.count(b"<Point"):
      return None
    if points:
      xy = np.fromiter(map(float, itertools.chain.from_iterable(points)), np.float64, 2 * len(points))
      strokes.append(xy.reshape(-1, 2) * np.array([1.0, -1.0]))
  return strokes or None


def check_declared_encoding(data: bytes) -> None:
  """IAMFormatError when an XML file's bytes do not decode in the encoding its declaration names (strict mode)."""
  m = _DECLARED_ENCODING.match(data.lstrip())
  if not m:
    return
  encoding = m[1].decode("ascii")
  try:
    data.decode(encoding)
  except LookupError:
    raise IAMFormatError(f"declares an unknown encoding {encoding!r}") from None
  except UnicodeDecodeError as e:
    raise IAMFormatError(f"declares encoding {encoding!r} but byte {e.start} is not valid in it") from None


def check_strokes(strokes: list[np.ndarray]) -> list[np.ndarray]:
  """The strokes of a line file, or IAMFormatError for ink no pen wrote: a non-finite coordinate, one beyond any
  whiteboard (`MAX_ABS_COORDINATE`: one such point would swamp the normalisation statistics of every line), or only
  single-point strokes (no pen movement at all)."""
  points_Nx2 = np.concatenate(strokes)
  if not np.all(np.isfinite(points_Nx2)):
    raise IAMFormatError("a <Point> has a non-finite x or y")
  far = float(np.max(np.abs(points_Nx2)))
  if far > MAX_ABS_COORDINATE:
    raise IAMFormatError(f"a <Point> lies {far:.3g} units out, beyond any whiteboard (at most {MAX_ABS_COORDINATE:g})")
  if all(len(s) == 1 for s in strokes):
    raise IAMFormatError(f"every one of its {len(strokes)} strokes is a single point: no pen movement")
  return strokes


def parse_line_strokes(data: bytes, strict: bool = False) -> np.ndarray:
  """One `lineStrokes` XML file -> raw offsets `[T, 3]` float32 (IAM units, y up, eos on stroke ends); IAMFormatError
  for malformed XML or ink no pen wrote (`check_strokes`). `strict` also checks that the bytes are valid in the
  encoding the file declares."""
  if strict:
    check_declared_encoding(data)
  strokes = _fast_strokes(data)
  if strokes is not None:
    return strokes_lib.strokes_to_offsets(check_strokes(strokes))
  try:
    root = ET.fromstring(data)
  except ET.ParseError as e:
    raise IAMFormatError(f"malformed XML ({e})") from None
  except (LookupError, ValueError) as e:  # an unknown declared encoding (found by experiments/fuzz_iam.py)
    raise IAMFormatError(f"unreadable XML ({e})") from None
  stroke_sets = list(root.iter("StrokeSet"))
  if not stroke_sets:
    raise IAMFormatError("no <StrokeSet> element")
  strokes = []
  for stroke in stroke_sets[0].iter("Stroke"):
    try:
      xy = [(float(p.attrib["x"]), -float(p.attrib["y"])) for p in stroke.iter("Point")]
    except (KeyError, ValueError) as e:
      raise IAMFormatError(f"a <Point> lacks a numeric x or y ({e!r})") from None
    if xy:
      strokes.append(np.asarray(xy, np.float64))
  if not strokes:
    raise IAMFormatError("empty <StrokeSet> (no points)")
  return strokes_lib.strokes_to_offsets(check_strokes(strokes))


def parse_transcription(data: bytes, strict: bool = False) -> list[str]:
  """One `ascii` file -> its text lines: the non-blank lines after `CSR:`, stripped. Bytes that are not UTF-8 are
  read as Latin-1 (malformed under `strict`); a text with a control character is malformed either way (it
  would enter the alphabet as a character to write)."""
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    if strict:
      raise IAMFormatError(f"byte {e.start} is not UTF-8") from None
    text = data.decode("latin-1")
  lines = text.splitlines()
  starts = [i for i, line in enumerate(lines) if line.strip() == "CSR:"]
  if not starts:
    raise IAMFormatError("no 'CSR:' line")
  out = [line.strip() for line in lines[starts[0] + 1 :] if line.strip()]
  for number, line in enumerate(out, 1):
    bad = next((c for c in line if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
      raise IAMFormatError(f"text line {number} holds the control character U+{ord(bad):04X}")
  return out


class IAMArchiveError(UserError, ValueError):
  """A tarball that cannot be read to its end (truncated or corrupt): always an error, never skipped."""


_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)
_MAGIC = {b"\x1f\x8b": gzip.GzipFile, b"BZh": bz2.BZ2File, b"\xfd7zXZ": lzma.LZMAFile}


def _decompressed(fileobj) -> Any:
  """A reader of the decompressed bytes of `fileobj` (gzip, bzip2, xz or a plain tar): these readers check the end
  of the compressed stream (its trailer and checksum) and raise EOFError on a cut, which tarfile's own stream
  reader does not."""
  head = fileobj.read(6)
  fileobj.seek(0)
  for magic, opener in _MAGIC.items():
    if head.startswith(magic):
      return opener(fileobj=fileobj, mode="rb") if opener is gzip.GzipFile else opener(fileobj, mode="rb")
  return fileobj


def _iter_files(path: str, desc: str, progress: bool) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
  """(name for messages, base name, read()) of every file of a folder or tarball, in one pass; a tarball that ends
  early or is corrupt anywhere (also between members, and in its compression trailer) is an IAMArchiveError."""
  if os.path.isdir(path):
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
    for f in tqdm.tqdm(files, desc=desc, unit="file", disable=not progress, leave=False):
      yield f, os.path.basename(f), lambda f=f: _read(f)
    return

  def broken(e: BaseException) -> IAMArchiveError:
    return IAMArchiveError(
      f"{path}: the archive is truncated or corrupt ({type(e).__name__}: {e}); download it "
      "again (or extract it and point config.data.iam_path at the folder)"
    )

  def reader(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], bytes]:
    def read() -> bytes:
      _check_size(member.size)
      try:
        return tar.extractfile(member).read()
      except _ARCHIVE_ERRORS as e:
        raise broken(e) from None

    return read

  with (
    open(path, "rb") as raw,
    tqdm.tqdm.wrapattr(
      raw, "read", total=os.path.getsize(path), desc=desc, disable=not progress, leave=False
    ) as wrapped,
  ):
    try:
      stream = _decompressed(wrapped)
      with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
          if member.isfile():
            yield f"{path}:{member.name}", os.path.basename(member.name), reader(tar, member)
      while stream.read(1 << 20):  # read to the end, so that a cut after the last member is noticed too
        pass
    except _ARCHIVE_ERRORS as e:
      raise broken(e) from None


def _check_size(size: int) -> None:
  """IAMFormatError for a file too large to be one line or one transcription (never read into memory)."""
  if size > MAX_FILE_BYTES:
    raise IAMFormatError(f"{size:,} bytes, over the {MAX_FILE_BYTES >> 20} MB a single IAM-OnDB file can hold")


def _read(path: str) -> bytes:
  """The bytes of a file (IAMFormatError beyond MAX_FILE_BYTES)."""
  _check_size(os.path.getsize(path))
  with open(path, "rb") as f:
    return f.read()


def _expected_ascii(form: str) -> str:
  """`ascii/a01/a01-000/a01-000u.txt` for form `a01-000u` (for messages)."""
  writer = form.split("-")[0]
  base = re.match(r"^[^-]+-\d+", form)
  return f"{ASCII_DIR}/{writer}/{base.group(0) if base else form}/{form}.txt"


def _problem_reporter(counts: collections.Counter, strict: bool) -> Callable[[str, str], None]:
  """A `problem(name, message)` that counts a malformed file and raises (strict) or warns naming it and skipping it."""

  def problem(name: str, message: str) -> None:
    counts["malformed_files"] += 1
    if strict:
      raise IAMFormatError(f"{name}: {message}")
    # Called from a read_iam step, so level 4 (problem <- step <- read_iam <- its caller) points at read_iam's caller.
    warnings.warn(f"{name}: {message}; skipped", IAMFormatWarning, stacklevel=4)

  return problem


def _read_wanted(split_lists: dict[str, str]) -> dict[str, dict[str, set[int] | None]]:
  """Split -> form -> the line numbers listed (None: the whole form), from the split lists in list order."""
  wanted: dict[str, dict[str, set[int] | None]] = {split: {} for split in SPLITS}
  for name in SPLIT_LISTS:  # trainset, testset_t, testset_f, then testset_v
    for entry in read_split_list(split_lists[name]):
      m = _LINE_ID.match(entry)
      form, line = (m["form"], int(m["num"])) if m else (entry, None)
      selection = wanted[SPLIT_LISTS[name]]
      if line is None or selection.get(form, set()) is None:
        selection[form] = None
      else:
        selection.setdefault(form, set()).add(line)
  return wanted


def _drop_duplicate_forms(wanted: dict[str, dict[str, set[int] | None]], counts: collections.Counter) -> None:
  """Keep a form listed for both training and validation in validation only, so that the splits never share one."""
  duplicates = set(wanted["train"]) & set(wanted["valid"])
  if duplicates:
    counts["duplicate_forms"] = len(duplicates)
    logging.warning(
      "IAM: %d forms are listed for both training and validation (kept in validation only), e.g. %s",
      len(duplicates),
      sorted(duplicates)[:5],
    )
    for form in duplicates:
      del wanted["train"][form]


def _read_transcriptions(
  ascii_path: str, forms: set[str], problem: Callable[[str, str], None], strict: bool, progress: bool
) -> dict[str, list[str] | None]:
  """Form -> its text lines (None: malformed, reported) for the listed `forms`, in one pass over the ascii files."""
  transcriptions: dict[str, list[str] | None] = {}
  for name, base, read in _iter_files(ascii_path, "IAM ascii", progress):
    m = _ASCII_FILE.match(base)
    if m and m["form"] in forms:
      try:
        transcriptions[m["form"]] = parse_transcription(read(), strict=strict)
      except IAMFormatError as e:
        problem(name, str(e))
        transcriptions[m["form"]] = None
  return transcriptions


def _read_line_files(
  strokes_path: str, forms: set[str], problem: Callable[[str, str], None], strict: bool, progress: bool
) -> dict[str, dict[int, np.ndarray | None]]:
  """Form -> line number -> raw offsets [T, 3] (None: malformed, reported) for the listed `forms`, in one pass."""
  line_files: dict[str, dict[int, np.ndarray | None]] = collections.defaultdict(dict)
  for name, base, read in _iter_files(strokes_path, "IAM lineStrokes", progress):
    m = _LINE_FILE.match(base)
    if not m or m["form"] not in forms:
      continue
    try:
      line = parse_line_strokes(read(), strict=strict)
    except IAMFormatError as e:
      problem(name, str(e))
      line = None
    line_files[m["form"]][int(m["num"])] = line
  return line_files


def _pair_form_lines(
  form: str,
  files: dict[int, np.ndarray | None],
  texts: list[str],
  selection: set[int] | None,
  counts: collections.Counter,
) -> list[tuple[str, np.ndarray, str]]:
  """(id, offsets [T, 3], text) per good selected line: line files by number paired with texts ([] if counts differ)."""
  numbers = sorted(files)
  if len(texts) != len(numbers):
    counts["skipped_forms"] += 1
    logging.info("IAM: skipped form %s: %d text lines but %d line files", form, len(texts), len(numbers))
    return []
  return [
    (f"{form}-{number:02d}", files[number], text)
    for number, text in zip(numbers, texts)
    if files[number] is not None and (selection is None or number in selection)
  ]


def _build_split(
  out: IamSplit,
  wanted: dict[str, set[int] | None],
  transcriptions: dict[str, list[str] | None],
  line_files: dict[str, dict[int, np.ndarray | None]],
  ascii_path: str,
  counts: collections.Counter,
  problem: Callable[[str, str], None],
) -> list[str]:
  """Append the lines of a split's `wanted` forms to `out`, in list order; the forms without line files (returned)."""
  missing = []
  for form, selection in wanted.items():
    files = line_files.get(form)
    if not files:
      counts["missing_forms"] += 1
      missing.append(form)
    elif form not in transcriptions:
      problem(
        f"{_expected_ascii(form)} (under {ascii_path})",
        f"missing transcription for the {len(files)} line files of form {form}",
      )
    elif transcriptions[form] is not None:  # None: malformed, already reported
      for line_id, line, text in _pair_form_lines(form, files, transcriptions[form], selection, counts):
        out.lines.append(line)
        out.texts.append(text)
        out.ids.append(line_id)
  return missing


def _report_missing_forms(missing: list[str], strokes_path: str, strict: bool) -> None:
  """Raise (strict) or warn once about listed forms without line files: likely an incomplete download."""
  if not missing:
    return
  message = (
    f"{len(missing)} forms listed in the split lists have no line files under {strokes_path} (e.g. "
    f"{', '.join(missing[:3])}): an incomplete download or extraction?"
  )
  if strict:
    raise IAMFormatError(message)
  warnings.warn(
    message + " Training goes on without them (config.data.strict=True makes this an error).",
    IAMFormatWarning,
    stacklevel=3,  # _report_missing_forms <- read_iam <- its caller
  )


def read_iam(iam_path: str, strict: bool = False, progress: bool = True) -> IamCorpus:
  """Read IAM-OnDB from `iam_path` into Graves' train / validation splits (raw offsets, y up)."""
  inputs = find_inputs(iam_path)
  counts = collections.Counter()
  problem = _problem_reporter(counts, strict)
  wanted = _read_wanted(inputs.split_lists)
  _drop_duplicate_forms(wanted, counts)
  all_forms = set(wanted["train"]) | set(wanted["valid"])
  counts["forms"] = len(all_forms)
  transcriptions = _read_transcriptions(inputs.ascii, all_forms, problem, strict, progress)
  line_files = _read_line_files(inputs.strokes, all_forms, problem, strict, progress)
  corpus = IamCorpus(train=IamSplit(), valid=IamSplit(), counts={})
  missing = []
  for split in SPLITS:
    missing += _build_split(
      getattr(corpus, split), wanted[split], transcriptions, line_files, inputs.ascii, counts, problem
    )
  _report_missing_forms(missing, inputs.strokes, strict)
  corpus.counts = dict(counts)
  return corpus
