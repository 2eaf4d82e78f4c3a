"""Tests of handwriting_jax.data.iam on tiny hand-made files in the IAM-OnDB format (tests/fixtures/iam)."""

import glob
import os
import pathlib
import re
import shutil
import tarfile
import warnings

import chex
import numpy as np
import pytest

from handwriting_jax.data import iam, strokes

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "iam")
LINE_01 = os.path.join("lineStrokes", "a01", "a01-000", "a01-000u-01.xml")


def absolute_points(path):
  """(x, y up, eos) of a fixture line file, read with a regex (independently of the reader)."""
  with open(path, encoding="iso-8859-1", newline="") as f:
    text = f.read()
  rows = []
  for stroke in re.findall(r"<Stroke [^>]*>(.*?)</Stroke>", text, flags=re.S):
    pts = [(float(x), -float(y), 0.0) for x, y in re.findall(r'<Point x="(\d+)" y="(\d+)"', stroke)]
    pts[-1] = pts[-1][:2] + (1.0,)
    rows.extend(pts)
  return np.asarray(rows, np.float32)


def copy_fixture(tmp_path):
  """A writable copy of the fixture folder."""
  root = tmp_path / "iam"
  shutil.copytree(FIXTURE, root)
  return root


def make_tarballs(src, dst):
  """The download layout: lineStrokes-all.tar.gz and ascii-all.tar.gz plus the split lists."""
  os.makedirs(dst, exist_ok=True)
  for folder, tarball in ((iam.STROKES_DIR, iam.STROKES_TAR), (iam.ASCII_DIR, iam.ASCII_TAR)):
    with tarfile.open(os.path.join(dst, tarball), "w:gz") as tar:
      tar.add(os.path.join(src, folder), arcname=folder)
  for name in iam.SPLIT_LISTS:
    shutil.copy(os.path.join(src, name), os.path.join(dst, name))
  return dst


def read(path, **kwargs):
  """read_iam without a progress bar."""
  return iam.read_iam(str(path), progress=False, **kwargs)


def test_fixture_has_the_real_format():
  with open(os.path.join(FIXTURE, LINE_01), "rb") as f:
    data = f.read()
  assert data.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n')
  assert b'"/>\r\n' in data and b"<StrokeSet>\n" in data  # CRLF point lines, LF header lines
  with open(os.path.join(FIXTURE, "trainset.txt"), "rb") as f:
    assert f.read().startswith(b" a01-000u\n")
  with open(os.path.join(FIXTURE, "ascii", "a01", "a01-000", "a01-000u.txt"), "rb") as f:
    assert b"\nCSR: \n" in f.read()


def test_splits_texts_and_counts():
  corpus = read(FIXTURE)
  # Graves: train = trainset + testset_t + testset_f, validation = testset_v.
  assert corpus.train.ids == ["a01-000u-01", "a01-000u-02", "b01-010z-01"]
  assert corpus.train.texts == ["A MOVE to stop", "Mr. Gaitskell", "Sir Roy's"]
  assert corpus.valid.ids == ["a02-062-01", "a02-062-02"]
  assert corpus.valid.texts == ["Labour life", "Peers is"]
  assert corpus.counts["skipped_forms"] == 1  # a01-000x: 2 text lines, 1 line file
  assert corpus.counts["missing_forms"] == 1  # z09-999a is listed but absent
  assert corpus.counts.get("malformed_files", 0) == 0
  for line in corpus.train.lines + corpus.valid.lines:
    assert line.dtype == np.float32 and line.ndim == 2 and line.shape[1] == 3
    assert line[-1, 2] == 1.0
    np.testing.assert_array_equal(line[0, :2], 0.0)


def test_offsets_turn_back_into_absolute_coordinates_exactly():
  corpus = read(FIXTURE)
  for i, line_id in enumerate(corpus.train.ids + corpus.valid.ids):
    line = (corpus.train.lines + corpus.valid.lines)[i]
    form = line_id.rsplit("-", 1)[0]
    path = os.path.join(FIXTURE, "lineStrokes", form[:3], re.match(r"^\w+-\d+", form).group(0), f"{line_id}.xml")
    expected = absolute_points(path)  # y flipped up
    chex.assert_shape(line, expected.shape)
    np.testing.assert_array_equal(strokes.offsets_to_points(line, origin=expected[0, :2]), expected)


def test_repeated_point_and_single_point_stroke_are_kept_raw():
  line = read(FIXTURE).train.lines[0]  # a01-000u-01: 5 + 1 + 3 points, one repeated
  chex.assert_shape(line, (9, 3))
  np.testing.assert_array_equal(line[:, 2], [0, 0, 0, 0, 1, 1, 0, 0, 1])
  np.testing.assert_array_equal(line[2, :2], 0.0)  # the repeated point: a zero offset
  np.testing.assert_array_equal(line[1, :2], [7.0, 8.0])  # (1080 - 1073, -(1050 - 1058)): y up


def test_tarballs_equal_folders(tmp_path):
  folder = read(FIXTURE)
  tarred = read(make_tarballs(FIXTURE, tmp_path / "download"))
  assert tarred.counts == folder.counts
  for split in ("train", "valid"):
    a, b = getattr(folder, split), getattr(tarred, split)
    assert a.ids == b.ids and a.texts == b.texts
    for x, y in zip(a.lines, b.lines):
      np.testing.assert_array_equal(x, y)


def test_split_lists_in_task1_folder(tmp_path):
  root = copy_fixture(tmp_path)
  os.makedirs(root / "task1")
  for name in iam.SPLIT_LISTS:
    os.replace(root / name, root / "task1" / name)
  assert read(root).valid.ids == ["a02-062-01", "a02-062-02"]


def test_line_ids_in_split_lists_select_lines(tmp_path):
  root = copy_fixture(tmp_path)
  (root / "testset_v.txt").write_text(" a02-062-02\n")
  assert read(root).valid.ids == ["a02-062-02"]


def break_file(root, kind):
  """Make one file malformed; returns the path the message must name."""
  line_02 = root / "lineStrokes" / "a01" / "a01-000" / "a01-000u-02.xml"
  if kind == "truncated":
    data = line_02.read_bytes()
    line_02.write_bytes(data[: len(data) // 2])
    return str(line_02)
  if kind == "empty":
    text = line_02.read_bytes().decode("iso-8859-1")
    text = re.sub(r"<StrokeSet>.*</StrokeSet>", "<StrokeSet>\n  </StrokeSet>", text, flags=re.S)
    line_02.write_bytes(text.encode("iso-8859-1"))
    return str(line_02)
  if kind == "no_ascii":
    os.remove(root / "ascii" / "a01" / "a01-000" / "a01-000u.txt")
    return "ascii/a01/a01-000/a01-000u.txt"
  if kind == "no_csr":
    path = root / "ascii" / "a02" / "a02-062" / "a02-062.txt"
    path.write_bytes(path.read_bytes().replace(b"CSR:", b"XYZ:"))
    return str(path)
  raise ValueError(kind)


@pytest.mark.parametrize("kind", ["truncated", "empty", "no_ascii", "no_csr"])
def test_malformed_file_warns_naming_it(tmp_path, kind):
  root = copy_fixture(tmp_path)
  name = break_file(root, kind)
  with pytest.warns(iam.IAMFormatWarning, match=re.escape(name)):
    corpus = read(root)
  assert corpus.counts["malformed_files"] == 1
  if kind in ("truncated", "empty"):
    assert corpus.train.ids == ["a01-000u-01", "b01-010z-01"]  # the good line of the form is kept
    assert corpus.train.texts == ["A MOVE to stop", "Sir Roy's"]
  if kind == "no_ascii":
    assert corpus.train.ids == ["b01-010z-01"]
  if kind == "no_csr":
    assert corpus.valid.ids == []


@pytest.mark.parametrize("kind", ["truncated", "empty", "no_ascii"])
def test_malformed_file_is_an_error_when_strict(tmp_path, kind):
  root = copy_fixture(tmp_path)
  name = break_file(root, kind)
  with pytest.raises(iam.IAMFormatError, match=re.escape(name)):
    read(root, strict=True)


def test_truncated_member_of_tarball_is_named(tmp_path):
  root = copy_fixture(tmp_path)
  break_file(root, "truncated")
  with pytest.warns(iam.IAMFormatWarning, match=r"lineStrokes-all\.tar\.gz:lineStrokes/a01/a01-000/a01-000u-02\.xml"):
    read(make_tarballs(root, tmp_path / "download"))


@pytest.mark.parametrize("damage", ["cut_half", "cut_trailer", "flipped_byte"])
def test_truncated_or_corrupt_tarball_is_an_error_naming_it(tmp_path, damage):
  download = make_tarballs(FIXTURE, tmp_path / "download")
  tarball = download / iam.STROKES_TAR
  data = bytearray(tarball.read_bytes())
  if damage == "cut_half":
    data = data[: len(data) // 2]
  elif damage == "cut_trailer":  # every member intact, only the gzip trailer (CRC, size) lost
    data = data[:-8]
  else:
    data[len(data) // 2] ^= 0xFF
  tarball.write_bytes(bytes(data))
  with pytest.raises(iam.IAMArchiveError, match=re.escape(str(tarball)) + ": the archive is truncated or corrupt"):
    read(download)
  with pytest.raises(iam.IAMArchiveError):
    read(download, strict=False)  # never a skip-and-warn, whatever data.strict says


def test_listed_forms_missing_from_the_archive_warn_loudly_or_fail_when_strict(tmp_path):
  root = copy_fixture(tmp_path)
  shutil.rmtree(root / "lineStrokes" / "b01")
  # The fixture lists one form that it lacks (z09-999a); b01-010z is the second.
  with pytest.warns(iam.IAMFormatWarning, match=r"2 forms listed in the split lists have no line files .*b01-010z"):
    corpus = read(root)
  assert corpus.counts["missing_forms"] == 2 and "b01-010z-01" not in corpus.train.ids
  with pytest.raises(iam.IAMFormatError, match="have no line files"):
    read(root, strict=True)


def test_strict_mode_refuses_bytes_invalid_in_the_declared_encoding(tmp_path):
  root = copy_fixture(tmp_path)
  line = root / "lineStrokes" / "a01" / "a01-000" / "a01-000u-02.xml"
  data = line.read_bytes().replace(b'encoding="ISO-8859-1"', b'encoding="UTF-8"', 1)
  line.write_bytes(data.replace(b"<StrokeSet>", b"<!-- \xff\xfe --><StrokeSet>", 1))
  assert len(read(root).train.ids) == 3  # lenient: the strokes themselves are fine
  with pytest.raises(iam.IAMFormatError, match=r"a01-000u-02\.xml: declares encoding 'UTF-8' but byte \d+ is not"):
    read(root, strict=True)


@pytest.mark.parametrize("tarred", [False, True])
def test_a_file_too_large_for_one_line_is_malformed_and_never_read_whole(tmp_path, monkeypatch, tarred):
  root = copy_fixture(tmp_path)
  line = root / "lineStrokes" / "a01" / "a01-000" / "a01-000u-02.xml"
  line.write_bytes(line.read_bytes() + b"<!--" + b"x" * 4000 + b"-->\n")
  monkeypatch.setattr(iam, "MAX_FILE_BYTES", 3000)  # every other fixture file is far smaller
  assert all(f.stat().st_size < 3000 for f in root.rglob("*") if f.is_file() and f != line)
  path = make_tarballs(root, tmp_path / "download") if tarred else root
  with pytest.warns(iam.IAMFormatWarning, match=r"a01-000u-02\.xml: [\d,]+ bytes, over the"):
    corpus = read(path)
  assert "a01-000u-02" not in corpus.train.ids and "a01-000u-01" in corpus.train.ids


def test_unknown_declared_encoding_is_a_format_error():
  # Found by experiments/fuzz_iam.py: ElementTree raised LookupError.
  data = b'<?xml version="1.0" encoding="xISO-8859-1"?>\n<a><StrokeSet><Stroke><Point x="1" y="2"/>\x00/Stroke>'
  with pytest.raises(iam.IAMFormatError, match="unknown encoding"):
    iam.parse_line_strokes(data)


def test_missing_inputs_are_clear_errors(tmp_path):
  with pytest.raises(ValueError, match=r"config.data.iam_path is empty.*lineStrokes-all.tar.gz"):
    iam.find_inputs("")
  missing = str(tmp_path / "nowhere")
  with pytest.raises(ValueError, match=re.escape(missing) + ".*trainset.txt"):
    iam.find_inputs(missing)
  root = copy_fixture(tmp_path)
  shutil.rmtree(root / "ascii")
  os.remove(root / "testset_v.txt")
  with pytest.raises(ValueError, match=r"lacks ascii-all.tar.gz or ascii/, testset_v.txt"):
    iam.find_inputs(str(root))


def test_parse_functions_directly():
  with open(os.path.join(FIXTURE, LINE_01), "rb") as f:
    line = iam.parse_line_strokes(f.read())
  chex.assert_shape(line, (9, 3))
  with pytest.raises(iam.IAMFormatError, match="StrokeSet"):
    iam.parse_line_strokes(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<WhiteboardCaptureSession/>')
  text = b"OCR:\n\nfoo bar\n\nCSR:  \r\n\r\nfoo\r\nbar baz  \r\n\r\n"
  assert iam.parse_transcription(text) == ["foo", "bar baz"]
  assert iam.parse_transcription("CSR:\n\nZ\xfcrich\n".encode("latin-1")) == ["Z\xfcrich"]
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert iam.read_split_list(os.path.join(FIXTURE, "trainset.txt")) == ["a01-000u", "z09-999a"]


def test_fast_parser_equals_elementtree_and_defers_to_it_on_anything_unusual(monkeypatch):
  """The regex fast path gives exactly what ElementTree gives, and hands unusual files to it."""
  paths = sorted(glob.glob(os.path.join(FIXTURE, "lineStrokes", "*", "*", "*.xml")))
  assert len(paths) >= 5
  datas = [pathlib.Path(p).read_bytes() for p in paths]
  assert all(iam._fast_strokes(d) is not None for d in datas)
  fast = [iam.parse_line_strokes(d) for d in datas]
  monkeypatch.setattr(iam, "_fast_strokes", lambda data: None)
  for d, f in zip(datas, fast):
    np.testing.assert_array_equal(f, iam.parse_line_strokes(d))
  monkeypatch.undo()
  # Attributes in another order, or a Point with extra spacing: valid XML the regex does not take.
  reordered = re.sub(
    rb'<Point x="([^"]*)" y="([^"]*)" time="([^"]*)"/>', rb'<Point time="\3" y="\2" x="\1"/>', datas[0]
  )
  assert reordered != datas[0] and iam._fast_strokes(reordered) is None
  np.testing.assert_array_equal(iam.parse_line_strokes(reordered), fast[0])


def test_fuzzed_files_parse_or_raise_iam_format_error(experiment):
  """A short run of experiments/fuzz_iam.py (the long one is run by hand; see its docstring)."""
  fuzz = experiment("fuzz_iam")
  assert fuzz.fuzz_target("line", seconds=0, chunk=300) >= 200  # hypothesis may skip repeated inputs
  assert fuzz.fuzz_target("transcription", seconds=0, chunk=300) >= 200


def _with_point(data: bytes, x: str) -> bytes:
  """The line file `data` with the x of its first point replaced by `x` (as the file would spell it)."""
  return re.sub(rb'<Point x="[^"]*"', f'<Point x="{x}"'.encode(), data, count=1)


@pytest.mark.parametrize(
  ("x", "reason"), [("nan", "non-finite"), ("inf", "non-finite"), ("-inf", "non-finite"), ("1e30", "beyond any")]
)
def test_a_point_no_whiteboard_can_record_makes_the_line_malformed(x, reason):
  with open(os.path.join(FIXTURE, LINE_01), "rb") as f:
    data = f.read()
  assert iam.parse_line_strokes(_with_point(data, "1234")).shape == (9, 3)  # a plausible x is fine
  with pytest.raises(iam.IAMFormatError, match=reason):
    iam.parse_line_strokes(_with_point(data, x))


def test_a_line_of_single_point_strokes_is_malformed():
  taps = b"".join(
    f'<Stroke colour="black" start_time="{i}" end_time="{i}"><Point x="{100 * i}" y="50" time="{i}"/></Stroke>'.encode()
    for i in range(4)
  )
  data = b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<WhiteboardCaptureSession><StrokeSet>' + taps
  data += b"</StrokeSet></WhiteboardCaptureSession>"
  with pytest.raises(iam.IAMFormatError, match="single point"):
    iam.parse_line_strokes(data)


def test_one_absurd_line_is_counted_and_leaves_the_statistics_of_the_rest_alone(tmp_path):
  root = copy_fixture(tmp_path)
  clean = read(FIXTURE)
  path = root / LINE_01
  path.write_bytes(_with_point(path.read_bytes(), "1e30"))
  with pytest.warns(iam.IAMFormatWarning, match=r"a01-000u-01\.xml.*beyond any whiteboard"):
    corpus = read(root)
  assert corpus.counts.get("malformed_files", 0) == clean.counts.get("malformed_files", 0) + 1
  lines = [*corpus.train.lines, *corpus.valid.lines]
  assert max(float(np.max(np.abs(x[:, :2]))) for x in lines) < iam.MAX_ABS_COORDINATE
  with pytest.raises(iam.IAMFormatError, match="beyond any whiteboard"):
    read(root, strict=True)


def test_transcriptions_not_utf8_or_with_control_characters():
  latin1 = "CSR:\n\nZ\xfcrich\n".encode("latin-1")
  assert iam.parse_transcription(latin1) == ["Z\xfcrich"]  # read as Latin-1 by default
  with pytest.raises(iam.IAMFormatError, match="not UTF-8"):
    iam.parse_transcription(latin1, strict=True)
  with pytest.raises(iam.IAMFormatError, match="line 2 holds the control character U\\+0090"):
    iam.parse_transcription(b"CSR:\n\nfine\nbad \x90 text\n")  # Latin-1 0x90 is a C1 control character
  assert iam.parse_transcription("CSR:\n\nZürich\n".encode()) == ["Zürich"]  # UTF-8 passes under strict too
  assert iam.parse_transcription("CSR:\n\nZürich\n".encode(), strict=True) == ["Zürich"]
