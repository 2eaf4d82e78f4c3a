"""Full-scale synthetic IAM-OnDB: generate the real tree, then time `load_dataset` on it (parse, then cached).

  nice -n 10 python experiments/iam_scale.py --out=iam_scale.json    # tarballs in a temporary folder (~1-2 min)
  nice -n 10 python experiments/iam_scale.py --folders --dir=/tmp/iam --keep   # extracted folders, kept
  nice -n 10 python experiments/iam_scale.py --scale=0.05            # smoke run (5% of the forms)

Run it from the repository root. The real data set is licensed and is never downloaded or committed; this is
a stand-in of the same size and in the same format as `tests/fixtures/iam/` and `handwriting_jax/data/iam.py`:
  * `lineStrokes/a01/a01-000/a01-000u-01.xml`: ISO-8859-1 `<WhiteboardCaptureSession>` with a
    `<WhiteboardDescription>` and `<StrokeSet><Stroke colour= start_time= end_time=><Point x= y= time=/>`,
    LF header lines and CRLF point lines; pen-like trajectories (loops drifting right, pen lifts between
    strokes, dots, pen-down pauses that repeat a point, a few spikes longer than `jump_threshold`), about
    700 points per line (a writer's points per character times the text length, so a few lines are over
    `max_points`);
  * `ascii/a01/a01-000/a01-000u.txt`: header lines, an `OCR:` block, `CSR:` then a blank line then one text
    line per line file (80 distinct characters, like Graves' IAM alphabet);
  * `trainset.txt`, `testset_v.txt`, `testset_t.txt`, `testset_f.txt` (` form-id` per line) with Graves'
    form and line counts (775 / 192 / 216 / 544 forms, 5,364 / 1,438 / 1,518 / 3,859 lines), 16 lines in
    3 unlisted forms (12,195 line files in all), and a few forms whose number of text lines differs from
    their number of line files (skipped by the reader);
packed as `lineStrokes-all.tar.gz` / `ascii-all.tar.gz` (gzip level `--compresslevel`), or left as folders
with `--folders`. The generator keeps what each line should become (points after dropping repeated points,
jumps, text length), so the check below is independent of the reader.

Then, in this process: a first `load_dataset(config.data)` (configs/synthesis.py, source "iam", a temporary
`cache_dir`; parse and cache write, progress bars on stderr), a cached reload (target: under 5 s), the summary
line, lines per split, and a check that every count equals what was generated (lines of mismatched forms,
texts over `max_chars`, lines over `max_points` removed; repeated points and split jumps as generated; the
same line ids; a sample of lines equal to the generated points). Wall and CPU seconds go to stdout and,
with `--out`, to a JSON file. `--profile` prints the top of a cProfile of the cached reload.
"""

import argparse
import collections
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import sys
import tarfile
import tempfile
import textwrap
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # `configs` is not a package

# Graves 2013, section 4.1: forms and lines of each IAM-OnDB split list.
SPLIT_LISTS = {
  "trainset.txt": (775, 5364),
  "testset_v.txt": (192, 1438),
  "testset_t.txt": (216, 1518),
  "testset_f.txt": (544, 3859),
}
GRAVES_SPLIT = {"trainset.txt": "train", "testset_t.txt": "train", "testset_f.txt": "train", "testset_v.txt": "valid"}
UNLISTED_LINES = (5, 5, 6)  # lines of forms in no split list: 12,179 listed + 16 = 12,195 line files
NUM_MISMATCHED = 12  # listed forms whose transcription has one text line more or fewer than line files
NUM_WRITERS = 221
CATEGORIES = "abcdefghjklmnpr"  # LOB text categories used by IAM form ids
SUFFIXES = "uvwxyz"
UNIT_PER_CHAR = 150.0  # IAM-OnDB units per character (see handwriting_jax/data/strokes.py)
SPIKE = 2500  # y offset of a spike point: longer than the default jump_threshold of 1000

WORDS = [
  "the",
  "of",
  "and",
  "to",
  "a",
  "in",
  "that",
  "is",
  "was",
  "he",
  "for",
  "it",
  "with",
  "as",
  "his",
  "on",
  "be",
  "at",
  "by",
  "had",
  "not",
  "are",
  "but",
  "from",
  "or",
  "have",
  "an",
  "they",
  "which",
  "one",
  "you",
  "were",
  "her",
  "all",
  "she",
  "there",
  "would",
  "their",
  "we",
  "him",
  "been",
  "has",
  "when",
  "who",
  "will",
  "more",
  "no",
  "if",
  "out",
  "so",
  "said",
  "what",
  "up",
  "its",
  "about",
  "into",
  "than",
  "them",
  "can",
  "only",
  "other",
  "new",
  "some",
  "could",
  "time",
  "these",
  "two",
  "may",
  "then",
  "do",
  "first",
  "any",
  "my",
  "now",
  "such",
  "like",
  "our",
  "over",
  "man",
  "me",
  "even",
  "most",
  "made",
  "after",
  "also",
  "did",
  "many",
  "before",
  "must",
  "through",
  "back",
  "years",
  "where",
  "much",
  "your",
  "way",
  "well",
  "down",
  "should",
  "because",
  "each",
  "just",
  "those",
  "people",
  "how",
  "too",
  "little",
  "state",
  "good",
  "very",
  "make",
  "world",
  "still",
  "own",
  "see",
  "men",
  "work",
  "long",
  "get",
  "here",
  "between",
  "both",
  "life",
  "being",
  "under",
  "never",
  "day",
  "same",
  "another",
  "know",
  "while",
  "last",
  "might",
  "us",
  "great",
  "old",
  "year",
  "off",
  "come",
  "since",
  "against",
  "go",
  "came",
  "right",
  "used",
  "take",
  "three",
  "Labour",
  "Government",
  "Minister",
  "Parliament",
  "London",
  "Britain",
  "Commons",
  "Gaitskell",
  "Macmillan",
  "Kennedy",
  "Mr",
  "Sir",
  "Lord",
  "President",
  "House",
  "Party",
  "Council",
  "Europe",
  "Queen",
  "Friday",
  "Monday",
  "Jack",
  "Quentin",
  "Zurich",
  "Yorkshire",
  "Oxford",
  "Wales",
  "Ireland",
  "Victoria",
  "Xavier",
  "Ulster",
  "Heath",
  "Bevan",
  "Nkrumah",
  "Verwoerd",
  "quite",
  "quick",
  "size",
  "next",
]
PUNCTUATION = ".,;:?!'\"-()&#/+[]"  # with 26 + 26 letters, 10 digits and space: 80 characters

HEADER = (
  '<?xml version="1.0" encoding="ISO-8859-1"?>\n<WhiteboardCaptureSession>\n  <WhiteboardDescription>\n'
  '    <SensorLocation corner="top_left"/>\n    <DiagonallyOppositeCoords x="%d" y="%d"/>\n'
  '    <VerticallyOppositeCoords x="%d" y="%d"/>\n    <HorizontallyOppositeCoords x="%d" y="%d"/>\n'
  "  </WhiteboardDescription>\n  <StrokeSet>\n"
)
STROKE = '    <Stroke colour="black" start_time="%.2f" end_time="%.2f">\n'
POINT = '      <Point x="%d" y="%d" time="%.2f"/>\r\n'  # CRLF point lines, LF elsewhere (as in IAM-OnDB)
STROKE_END = "    </Stroke>\n"
FOOTER = "  </StrokeSet>\n</WhiteboardCaptureSession>\n"


def parse_args(argv=None) -> argparse.Namespace:
  """Command-line flags (see --help)."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dir", default="", help="generate into this folder (default: a temporary folder)")
  p.add_argument("--folders", action="store_true", help="leave lineStrokes/ and ascii/ extracted (no tarballs)")
  p.add_argument("--keep", action="store_true", help="keep the generated folder and the cache afterwards")
  p.add_argument("--scale", type=float, default=1.0, help="fraction of the forms and lines to generate")
  p.add_argument("--seed", type=int, default=0, help="random seed of the generated data set")
  p.add_argument("--compresslevel", type=int, default=1, help="gzip level of the tarballs (1 fast .. 9 small)")
  p.add_argument("--profile", action="store_true", help="cProfile the cached reload and print the top entries")
  p.add_argument("--out", default="", help="write the figures to this JSON file")
  return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------- generation


def form_plan(rng: np.random.Generator, scale: float) -> list[dict]:
  """Forms with their id, split list ('' = unlisted), writer, number of line files and mismatch (-1, 0, +1)."""
  sizes = {name: (max(1, round(f * scale)), max(1, round(n * scale))) for name, (f, n) in SPLIT_LISTS.items()}
  unlisted = [max(1, round(n * scale)) for n in UNLISTED_LINES] if scale >= 0.5 else [5]
  num_forms = sum(f for f, _ in sizes.values()) + len(unlisted)
  ids, texts = [], set()
  while len(ids) < num_forms:  # texts a01-000, a01-001, ... each written by one to four writers
    cat = CATEGORIES[rng.integers(len(CATEGORIES))]
    text = f"{cat}{rng.integers(1, 8):02d}-{rng.integers(0, 1000):03d}"
    if text in texts:
      continue
    texts.add(text)
    writers = rng.integers(1, 5)
    suffixes = [""] if writers == 1 and rng.random() < 0.3 else sorted(rng.choice(list(SUFFIXES), writers, False))
    ids.extend(text + s for s in suffixes)
  ids = ids[:num_forms]
  order = rng.permutation(len(ids))
  forms, start = [], 0
  for name, (num, lines) in list(sizes.items()) + [("", (len(unlisted), sum(unlisted)))]:
    counts = unlisted if not name else _spread(rng, num, lines)
    for k, count in zip(order[start : start + num], counts):
      forms.append(
        {"form": ids[k], "list": name, "writer": int(rng.integers(NUM_WRITERS)), "lines": int(count), "mismatch": 0}
      )
    start += num
  listed = [f for f in forms if f["list"] and f["lines"] >= 2]
  for i, k in enumerate(rng.choice(len(listed), min(len(listed), max(1, round(NUM_MISMATCHED * scale))), False)):
    listed[k]["mismatch"] = 1 if i % 2 == 0 else -1
  return sorted(forms, key=lambda f: f["form"])


def _spread(rng: np.random.Generator, num: int, total: int) -> list[int]:
  """`num` lines-per-form counts in [1, 14] (mostly 4-10) summing to `total`."""
  counts = np.clip(np.round(rng.normal(total / num, 2.0, num)), 1, 14).astype(int)
  while counts.sum() != total:
    k = rng.integers(num)
    step = 1 if counts.sum() < total else -1
    if 1 <= counts[k] + step <= 14:
      counts[k] += step
  return counts.tolist()


def make_text(rng: np.random.Generator, num_chars: int) -> str:
  """A sentence-like line of about `num_chars` characters."""
  words = []
  while sum(len(w) + 1 for w in words) < num_chars:
    r = rng.random()
    if r < 0.04:
      word = str(rng.integers(1, 2000))
    elif r < 0.07:
      word = WORDS[rng.integers(len(WORDS))].upper()
    else:
      word = WORDS[rng.integers(len(WORDS))]
      if rng.random() < 0.06:
        word = word.capitalize()
    if rng.random() < 0.12:
      p = PUNCTUATION[min(rng.geometric(0.35) - 1, len(PUNCTUATION) - 1)]
      word = f"{p}{word}{p}" if p in "'\"" else (f"({word})" if p in "()" else (f"[{word}]" if p in "[]" else word + p))
    words.append(word)
  text = " ".join(words)
  return text[0].upper() + text[1:]


def make_line(rng: np.random.Generator, style: dict, num_points: int, baseline: float, spike: bool) -> dict:
  """Absolute integer points (x, y down) of one line, its strokes, times and the reader's expected counts."""
  # Stroke lengths: ~6% single-point strokes (dots), the rest 2 + geometric (mean ~22 points).
  lengths = np.where(rng.random(num_points) < 0.06, 1, 2 + rng.geometric(1 / 20, num_points))
  ends = np.cumsum(lengths)
  n = int(np.searchsorted(ends, num_points)) + 1
  lengths = lengths[:n].copy()
  lengths[-1] -= ends[n - 1] - num_points
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  stroke = np.repeat(np.arange(n), lengths)
  t = np.arange(num_points)
  # A loop trajectory (cursive-like) drifting right, with pen lifts that move the pen on between strokes.
  speed = 2 * np.pi / style["loop"] * np.exp(np.cumsum(rng.normal(0, 0.05, num_points)).clip(-0.6, 0.6))
  phase = np.cumsum(speed) + rng.uniform(0, 2 * np.pi)
  height = np.where(rng.random(n) < 0.15, 1.9, 1.0) * style["height"] * rng.uniform(0.8, 1.2, n)
  gaps = np.cumsum(np.where(rng.random(n) < 0.25, rng.uniform(80, 200, n), rng.uniform(0, 40, n)))
  wobble = np.cumsum(rng.normal(0, 0.8, num_points))
  up = height[stroke] * (0.5 + 0.5 * np.sin(phase)) + rng.normal(0, 1.5, num_points)
  x = 400 + style["drift"] * t + gaps[stroke] + 0.3 * style["height"] * np.cos(phase) + style["slant"] * up
  y = baseline - up + wobble + style["slope"] * t
  xy = np.round(np.stack([x, y], axis=1)).astype(np.int64)
  # The pen rests on landing on ~25% of strokes: their second point repeats the first.
  rest = starts[(lengths >= 3) & (rng.random(n) < 0.25)]
  xy[rest + 1] = xy[rest]
  long_strokes = np.flatnonzero(lengths >= 5)
  spike = spike and len(long_strokes) > 0
  if spike:  # a digitiser glitch in the middle of a long stroke: two pen-down jumps (there and back)
    k = int(rng.choice(long_strokes))
    xy[starts[k] + lengths[k] // 2, 1] += SPIKE
  first = np.zeros(num_points, bool)
  first[starts] = True
  repeated = int(np.sum(~first[1:] & np.all(xy[1:] == xy[:-1], axis=1)))
  # Times: 100 points per second, pen lifts of 0.1-0.5 s.
  lift = np.concatenate([[0], rng.integers(10, 50, n - 1)])
  centis = style["t0"] + t + np.cumsum(lift)[stroke]
  return {
    "xy": xy,
    "starts": starts,
    "lengths": lengths,
    "time": centis / 100.0,
    "repeated": repeated,
    "jumps": 2 if spike else 0,
    "kept_points": num_points - repeated,
  }


def line_xml(line: dict, board: tuple[int, ...]) -> bytes:
  """The lineStrokes XML file of one line."""
  vals = np.column_stack([line["xy"], line["time"]]).ravel().tolist()
  times = line["time"].tolist()
  parts = [HEADER % board]
  for a, n in zip(line["starts"].tolist(), line["lengths"].tolist()):
    parts.append(STROKE % (times[a], times[a + n - 1]))
    parts.append((POINT * n) % tuple(vals[3 * a : 3 * (a + n)]))
    parts.append(STROKE_END)
  parts.append(FOOTER)
  return "".join(parts).encode("iso-8859-1")


def ascii_file(form: str, writer: int, texts: list[str], rng: np.random.Generator) -> bytes:
  """The ascii transcription of one form: header, OCR block (the text re-wrapped), CSR block."""
  ocr = textwrap.wrap(" ".join(texts), width=int(rng.integers(45, 70))) or [""]
  csr = "CSR:" + " " * int(rng.choice([0, 0, 1, 2]))
  return (
    f"Name:\t\t{form}\nWriter-ID:\t{10000 + writer}\n{'%' * 40}\nOCR:\n\n"
    + "\n".join(ocr)
    + f"\n\n{csr}\n\n"
    + "\n".join(texts)
    + "\n\n"
  ).encode("iso-8859-1")


class TreeWriter:
  """Writes files under `root` either as folders or into the two tarballs (members in `tar` order)."""

  def __init__(self, root: str, folders: bool, compresslevel: int):
    """Open the tarballs (unless `folders`)."""
    self.root, self.folders, self.bytes = root, folders, collections.Counter()
    self.tars, self.dirs = {}, set()
    if not folders:
      for top, name in (("lineStrokes", "lineStrokes-all.tar.gz"), ("ascii", "ascii-all.tar.gz")):
        self.tars[top] = tarfile.open(os.path.join(root, name), "w:gz", compresslevel=compresslevel)  # noqa: SIM115  (closed in close())
    self.mtime = int(time.time())  # an integer: no per-member PAX header

  def add(self, relpath: str, data: bytes) -> None:
    """One file, e.g. `lineStrokes/a01/a01-000/a01-000u-01.xml`."""
    top = relpath.split("/")[0]
    self.bytes[top] += len(data)
    if self.folders:
      path = os.path.join(self.root, relpath)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "wb") as f:
        f.write(data)
      return
    tar = self.tars[top]
    parts = relpath.split("/")
    for i in range(1, len(parts)):
      d = "/".join(parts[:i])
      if d not in self.dirs:
        self.dirs.add(d)
        info = tarfile.TarInfo(d)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, self.mtime
        tar.addfile(info)
    info = tarfile.TarInfo(relpath)
    info.size, info.mode, info.mtime = len(data), 0o644, self.mtime
    tar.addfile(info, io.BytesIO(data))

  def close(self) -> None:
    """Finish the tarballs."""
    for tar in self.tars.values():
      tar.close()


def generate(root: str, folders: bool, scale: float, seed: int, compresslevel: int) -> dict:
  """Write the tree under `root`; returns what the reader should find (per line and in total)."""
  rng = np.random.default_rng(seed)
  forms = form_plan(rng, scale)
  styles = []
  for _ in range(NUM_WRITERS):  # points per character set the pen speed: drift per point = 0.8 char / ppc
    ppc = rng.uniform(12.5, 20.5)
    styles.append(
      {
        "ppc": ppc,
        "drift": 0.8 * UNIT_PER_CHAR / ppc,
        "loop": rng.uniform(7.0, 11.0),
        "height": rng.uniform(70, 130),
        "slant": rng.uniform(-0.1, 0.5),
        "slope": rng.normal(0, 0.02),
      }
    )
  num_lines = sum(f["lines"] for f in forms)
  spikes = set(rng.choice(num_lines, max(1, round(12 * scale)), replace=False).tolist())
  writer = TreeWriter(root, folders, compresslevel)
  lines, samples, k = [], {}, 0
  for form in forms:
    style = dict(styles[form["writer"]], t0=int(rng.integers(100_000, 900_000)))
    board = (int(rng.integers(5500, 8000)), int(rng.integers(1200, 4000)))
    board = (board[0], board[1], int(rng.integers(800, 1100)), board[1], board[0], int(rng.integers(600, 900)))
    top, folder = form["form"][:3], form["form"][:7]  # a01-000u -> a01/a01-000
    texts = []
    for number in range(1, form["lines"] + 1):
      text = make_text(rng, int(np.clip(round(rng.normal(42, 11)), 4, 95)))
      num_points = max(20, round(len(text) * style["ppc"] * rng.lognormal(0, 0.12)))
      line = make_line(rng, style, num_points, 600.0 + 250.0 * number, spike=k in spikes)
      style["t0"] = round(line["time"][-1] * 100) + int(rng.integers(200, 1000))
      line_id = f"{form['form']}-{number:02d}"
      writer.add(f"lineStrokes/{top}/{folder}/{line_id}.xml", line_xml(line, board))
      lines.append(
        {
          "id": line_id,
          "form": form["form"],
          "list": form["list"],
          "mismatch": form["mismatch"],
          "chars": len(text),
          **{key: line[key] for key in ("repeated", "jumps", "kept_points")},
        }
      )
      if k % 997 == 0:
        samples[line_id] = line["xy"]
      texts.append(text)
      k += 1
    if form["mismatch"] > 0:
      texts.append(make_text(rng, 30))
    elif form["mismatch"] < 0:
      texts.pop()
    writer.add(f"ascii/{top}/{folder}/{form['form']}.txt", ascii_file(form["form"], form["writer"], texts, rng))
  writer.close()
  for name in SPLIT_LISTS:
    ids = sorted(f["form"] for f in forms if f["list"] == name)
    with open(os.path.join(root, name), "w", encoding="iso-8859-1", newline="\n") as f:
      f.write("".join(f" {form}\n" for form in ids))
  return {"forms": forms, "lines": lines, "samples": samples, "bytes": dict(writer.bytes)}


def expected_dataset(plan: dict, max_points: int, max_chars: int) -> dict:
  """What load_dataset should report, from the generator's own bookkeeping."""
  exp = collections.Counter()
  ids = {"train": set(), "valid": set()}
  for line in plan["lines"]:
    if not line["list"] or line["mismatch"]:
      continue
    if line["chars"] > max_chars:
      exp["dropped_long_texts"] += 1
      continue
    exp["repeated_points"] += line["repeated"]
    exp["split_jumps"] += line["jumps"]
    if line["kept_points"] > max_points:
      exp["dropped_long_lines"] += 1
      continue
    split = GRAVES_SPLIT[line["list"]]
    ids[split].add(line["id"])
    if split == "train":
      exp["train_points"] += line["kept_points"]
  listed = [f for f in plan["forms"] if f["list"]]
  exp.update(
    train_lines=len(ids["train"]),
    valid_lines=len(ids["valid"]),
    forms=len(listed),
    skipped_forms=sum(1 for f in listed if f["mismatch"]),
    missing_forms=0,
    malformed_files=0,
    duplicate_forms=0,
    dropped_jump_lines=0,
    dropped_empty_lines=0,
  )
  return {"counts": dict(exp), "ids": ids}


# ----------------------------------------------------------------------------------------------- measurement


def timed(fn, *args, **kwargs):
  """(result, wall seconds, CPU seconds of this process)."""
  wall, cpu = time.perf_counter(), time.process_time()
  out = fn(*args, **kwargs)
  return out, time.perf_counter() - wall, time.process_time() - cpu


def check(ds, again, plan: dict, expected: dict) -> list[str]:
  """Differences between the loaded data set and the generated one (empty when all agree)."""
  problems = []
  for key, want in sorted(expected["counts"].items()):
    got = ds.summary.get(key)
    if got != want:
      problems.append(f"summary[{key!r}] = {got}, generated {want}")
  for split in ("train", "valid"):
    got = set(getattr(ds, split).ids)
    if got != expected["ids"][split]:
      problems.append(
        f"{split} ids: {len(got - expected['ids'][split])} unexpected, {len(expected['ids'][split] - got)} missing"
      )
    a, b = getattr(ds, split), getattr(again, split)
    if a.ids != b.ids or a.texts != b.texts or not all(np.array_equal(p, q) for p, q in zip(a.strokes, b.strokes)):
      problems.append(f"{split}: the cached reload differs from the first load")
  index = {i: (split, n) for split in ("train", "valid") for n, i in enumerate(getattr(ds, split).ids)}
  for line_id, xy in plan["samples"].items():
    if line_id not in index:
      continue
    split, n = index[line_id]
    raw = ds.stats.denormalise(getattr(ds, split).strokes[n]).astype(np.float64)
    got = np.cumsum(raw[:, :2], axis=0) + [xy[0, 0], -xy[0, 1]]
    keep = np.concatenate([[True], np.any(xy[1:] != xy[:-1], axis=1)])  # repeated points are dropped
    want = np.stack([xy[keep, 0], -xy[keep, 1]], axis=1)
    if got.shape != want.shape or np.max(np.abs(got - want)) > 0.5:
      problems.append(f"line {line_id}: points differ from the generated ones")
  return problems


def main(argv=None) -> int:
  """Generate, load twice, check, report."""
  args = parse_args(argv)
  from configs import synthesis  # after the sys.path insert
  from handwriting_jax.data import cache as cache_lib
  from handwriting_jax.data import dataset as dataset_lib

  root = os.path.abspath(args.dir) if args.dir else tempfile.mkdtemp(prefix="iam-scale-")
  os.makedirs(root, exist_ok=True)
  if os.listdir(root):
    print(f"error: {root} is not empty", file=sys.stderr)
    return 2
  cache_dir = tempfile.mkdtemp(prefix="iam-scale-cache-")
  fig = {"dir": root, "folders": args.folders, "scale": args.scale, "seed": args.seed}
  try:
    print(f"generating into {root} ({'folders' if args.folders else 'tarballs'}, scale {args.scale})", flush=True)
    plan, fig["generate_s"], fig["generate_cpu_s"] = timed(
      generate, root, args.folders, args.scale, args.seed, args.compresslevel
    )
    lines = plan["lines"]
    fig["forms"] = len(plan["forms"])
    fig["line_files"] = len(lines)
    fig["ascii_files"] = len(plan["forms"])
    fig["mismatched_forms"] = sum(1 for f in plan["forms"] if f["mismatch"])
    fig["lines_per_list"] = {name: sum(1 for x in lines if x["list"] == name) for name in SPLIT_LISTS}
    fig["forms_per_list"] = {name: sum(1 for f in plan["forms"] if f["list"] == name) for name in SPLIT_LISTS}
    fig["unlisted_lines"] = sum(1 for x in lines if not x["list"])
    points = np.asarray([x["kept_points"] + x["repeated"] for x in lines])
    fig["points_per_line"] = {
      "mean": float(points.mean()),
      "median": float(np.median(points)),
      "min": int(points.min()),
      "max": int(points.max()),
    }
    fig["uncompressed_mb"] = {k: v / 2**20 for k, v in plan["bytes"].items()}
    fig["input_mb"] = {
      name: os.path.getsize(os.path.join(root, name)) / 2**20
      for name in sorted(os.listdir(root))
      if os.path.isfile(os.path.join(root, name))
    }
    print(
      f"generated in {fig['generate_s']:.1f} s: {fig['forms']} forms, {fig['line_files']} line files, "
      f"{fig['ascii_files']} ascii files, {fig['mismatched_forms']} mismatched forms; lines per list "
      f"{fig['lines_per_list']} + {fig['unlisted_lines']} unlisted; points per line {fig['points_per_line']}; "
      f"uncompressed MB { ({k: round(v, 1) for k, v in fig['uncompressed_mb'].items()}) }",
      flush=True,
    )

    cfg = synthesis.get_config("")
    cfg.data.source, cfg.data.iam_path, cfg.data.cache_dir = "iam", root, cache_dir
    expected = expected_dataset(plan, cfg.data.max_points, cfg.data.max_chars)
    ds, fig["first_load_s"], fig["first_load_cpu_s"] = timed(dataset_lib.load_dataset, cfg.data)
    fig["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
      f"first load (parse + cache write): {fig['first_load_s']:.1f} s wall, {fig['first_load_cpu_s']:.1f} s "
      f"CPU; peak RSS so far {fig['peak_rss_mb']:.0f} MB",
      flush=True,
    )
    again, fig["cached_load_s"], fig["cached_load_cpu_s"] = timed(dataset_lib.load_dataset, cfg.data)
    caches = [os.path.join(cache_dir, f) for f in os.listdir(cache_dir) if f.endswith(".npz")]
    fig["cache_mb"] = sum(os.path.getsize(f) for f in caches) / 2**20
    print(
      f"cached reload: {fig['cached_load_s']:.2f} s wall, {fig['cached_load_cpu_s']:.2f} s CPU "
      f"(target < 5 s; cache {fig['cache_mb']:.0f} MB)",
      flush=True,
    )
    if caches:
      _, fig["cache_file_load_s"], _ = timed(cache_lib.load, caches[0])
      print(f"  of which cache.load alone: {fig['cache_file_load_s']:.2f} s")
    if args.profile:
      prof = cProfile.Profile()
      prof.runcall(dataset_lib.load_dataset, cfg.data)
      pstats.Stats(prof).sort_stats("cumulative").print_stats(20)
    fig["summary_line"] = again.summary["line"]
    fig["summary"] = {k: v for k, v in again.summary.items() if k != "line"}
    fig["cache_hit"] = [ds.summary["cache_hit"], again.summary["cache_hit"]]
    fig["expected"] = expected["counts"]
    print(again.summary["line"])
    print(
      f"lines per split: train {len(again.train)}, valid {len(again.valid)} "
      f"(generated in listed forms: {sum(fig['lines_per_list'].values())})"
    )
    problems = check(ds, again, plan, expected)
    if fig["cache_hit"] != [False, True]:
      problems.append(f"cache_hit of the two loads: {fig['cache_hit']}, expected [False, True]")
    fig["problems"] = problems
    fig["ok"] = not problems
    print(
      "check: "
      + (
        "every count equals the generated data set (minus mismatched forms, texts over max_chars, "
        "lines over max_points)"
        if not problems
        else "FAILED\n  " + "\n  ".join(problems)
      )
    )
  finally:
    if not args.keep:
      shutil.rmtree(cache_dir, ignore_errors=True)
      if args.dir:
        for name in os.listdir(root):
          p = os.path.join(root, name)
          shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
      else:
        shutil.rmtree(root, ignore_errors=True)
    else:
      print(f"kept {root} and the cache {cache_dir}")
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(fig, f, indent=2)
  return 0 if fig.get("ok") else 1


if __name__ == "__main__":
  sys.exit(main())
