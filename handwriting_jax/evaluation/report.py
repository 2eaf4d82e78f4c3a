"""Judge a writer as users do: validation NLL in the paper's units, and legibility read back by an OCR engine.

  python -m handwriting_jax.evaluate [--shipped=embedded]          # a writer shipped in the package
  python -m handwriting_jax.evaluate --workdir=DIR [--checkpoint_steps=4000,5000,6000] [--style_file=s.npz]

NLL: the whole validation split of the data the writer was trained on (IAM-OnDB: every testset_v line up to the
paper's 1,200 points, whatever the training config's `max_points`), normalised with the checkpoint's own statistics,
in nats per sequence (the paper's unit) and per step; also in raw offset units, where figures from different
normalisations can be compared. Without the data (an IAM path that is not on this machine) only legibility is
reported, and the report says so.

Legibility: `SENTENCES` (everyday sentences in no training text) are written unprimed, each line on its own, with
`--seeds` draws each, at every `--biases`; every line is rendered and read back by tesseract
(`evaluation.legibility`); CER and WER per bias. With `--style_file` (or `--style=N`, validation line N) the same
is done primed with that line. Images, contact sheets and `report.json` go to `--out` (default WORKDIR/eval/step_N).
"""

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from handwriting_jax.data import batches as batches_lib
from handwriting_jax.data import draw, end_of_text
from handwriting_jax.errors import UserError
from handwriting_jax.evaluation import fidelity as fid
from handwriting_jax.evaluation import legibility, line_shape
from handwriting_jax.model import sampling as sample_lib
from handwriting_jax.training import step as step_lib
from handwriting_jax.writing import adaptation
from handwriting_jax.writing import writer as writer_lib

# Everyday sentences of 27-35 characters, lower case but one capital, none in the IAM-OnDB or embedded-corpus
# training texts (evaluate checks that against the loaded training split and reports any overlap).
SENTENCES = (
  "the quick brown fox jumps over",
  "please call me back after lunch",
  "we will meet at the station",
  "my sister bought a new bicycle",
  "the coffee here is always cold",
  "do not forget to water plants",
  "he left his keys on the table",
  "rain is expected later tonight",
  "she plays the piano every day",
  "our train was late this morning",
  "thank you for the lovely gift",
  "the children are asleep upstairs",
  "send me the photos from the trip",
  "this soup needs a little more salt",
  "the garden looks lovely in spring",
  "I found an old map in the attic",
)
# Lines rich in digits, capitals and punctuation (times, dates, prices, phone numbers, addresses, Q / X / Z), 25-35
# characters, every character in both shipped writers' alphabets: what users of every port find written worst.
DIGIT_SENTENCES = (
  "Call me at 555-0123 after 9:30.",
  "The bus leaves at 7:45 on May 12.",
  "Room 208, Queen Street, Oxford.",
  "It costs 14.99, not 41.99 (VAT).",
  "Zoe was born on 3 June 1987.",
  "Flight QX 4071 lands at 18:20.",
  "Order 36 boxes by 25 March!",
  "Is it 0.5 or 0.05 litres of milk?",
  "Xavier ran 10 km in 52 minutes.",
  "Dial 020 7946 0018 before noon.",
  "Page 96: see the note on Zeta.",
  "The 2nd and 3rd floors, 17-19.",
  "Quiz night: 8 teams, 64 points.",
  "Meet me at 11:15, Gate 7, Zurich.",
  "Temperature: -4 to 6 degrees.",
  "ISBN 0-19-852663-6, page 204.",
)
DIGITS_BIAS = 0.75  # the bias the digit lines are written at (or the first of --biases without it)
PAPER_MAX_POINTS = 1200  # the paper's IAM-OnDB line cap; validation NLL covers every line up to it
_EVAL_BATCH = 32
_PAD_MULTIPLE = 200  # padded validation lengths: few shapes, few compiles


class EvaluateError(UserError, ValueError):
  """An evaluation that cannot be run as asked (bad biases, seeds, output path...)."""


@dataclasses.dataclass(frozen=True)
class Fidelity:
  """What the style-fidelity section measures: `forms` held-out hands (0: none), `sentences` written per hand, at
  `bias`, judged by the hand encoder at `encoder_path` (default: the one shipped in the package)."""

  forms: int = 20
  sentences: int = 3
  bias: float = 0.75
  encoder_path: str = fid.ENCODER_FILE
  adapt_lines: int = 0  # > 0: also measure writers adapted to each hand on that many of its lines

  def encoder(self) -> fid.HandEncoder:
    """The hand encoder, after checking the settings (EvaluateError / FidelityError before any work)."""
    if self.forms < 2 or self.sentences < 1 or not math.isfinite(self.bias) or self.bias < 0:
      raise EvaluateError(
        f"--fidelity_forms must be 0 (off) or >= 2 and --fidelity_sentences >= 1, with a finite "
        f"--fidelity_bias >= 0; got {self.forms}, {self.sentences}, {self.bias}"
      )
    if not 0 <= self.adapt_lines <= adaptation.MAX_LINES:
      raise EvaluateError(
        f"--fidelity_adapt_lines={self.adapt_lines}: adapt on 0 (off) to {adaptation.MAX_LINES} lines of each hand"
      )
    return fid.load_encoder(self.encoder_path)[0]


@dataclasses.dataclass(frozen=True)
class ValidationData:
  """Validation lines renormalised with a checkpoint's statistics, and the training texts (for the overlap check)."""

  strokes: list[np.ndarray]
  texts: list[str]
  train_texts: list[str]
  description: str
  ids: list[str] = dataclasses.field(default_factory=list)  # line ids: IAM-OnDB's a01-000u-03 (form a01-000u)


def load_validation(writer: writer_lib.Writer, iam_path: str | None = None) -> ValidationData:
  """The writer's validation split up to PAPER_MAX_POINTS points, normalised with the checkpoint's statistics.

  Raises a UserError (from the data loader) when the data is not on this machine."""
  from handwriting_jax.data import dataset as dataset_lib

  data_cfg = ml_collections.ConfigDict(writer.config.data.to_dict())
  data_cfg.max_points = max(int(data_cfg.max_points), PAPER_MAX_POINTS)
  if iam_path:
    data_cfg.iam_path = iam_path
  data = dataset_lib.load_dataset(data_cfg, progress=False)
  strokes = [writer.stats.normalise(data.stats.denormalise(x)) for x in data.valid.strokes]
  source = "IAM-OnDB testset_v" if data_cfg.source == "iam" else f"{data_cfg.source} validation split"
  every = (
    ""
    if int(data_cfg.downsample) == 1
    else (
      f", one point in {int(data_cfg.downsample)} of each stroke kept (data.downsample: nats per sequence are not "
      "comparable with full-rate figures such as the paper's)"
    )
  )
  return ValidationData(
    strokes,
    list(data.valid.texts),
    list(data.train.texts),
    f"{source}, every line up to {data_cfg.max_points} points{every}",
    list(data.valid.ids),
  )


def validation_nll(writer: writer_lib.Writer, strokes: Sequence[np.ndarray], texts: Sequence[str]) -> dict:
  """Exact NLL over every line: nats per sequence and per step (normalised offsets), and per sequence in raw units.

  Raw units: the density of the de-normalised offsets, NLL + Σ_t log(σ_x σ_y), comparable across normalisations.
  A writer with the end symbol reads it after each text, as in training, but its end move is not counted: the figure
  is the NLL of the lines' ink, comparable with writers without the symbol.
  """
  from flax import nnx

  graphdef, params = nnx.split(writer.model, nnx.Param)
  ink_lengths = [len(x) for x in strokes]
  strokes, texts = end_of_text.appended(strokes, texts, writer.alphabet, writer.stats)
  ids, _ = writer.alphabet.encode_all(list(texts), on_unknown="map")  # as in training
  order = np.argsort([len(x) for x in strokes], kind="stable")
  sums = jax.jit(step_lib.eval_sums, static_argnums=0)
  total, steps = 0.0, 0.0
  for lo in range(0, len(order), _EVAL_BATCH):
    idx = order[lo : lo + _EVAL_BATCH]
    batch = batches_lib.fitted_batch([strokes[i] for i in idx], [ids[i] for i in idx], _EVAL_BATCH, _PAD_MULTIPLE)
    for b, i in enumerate(idx):
      batch["mask"][b, ink_lengths[i] :] = 0.0  # the end move, when there is one
    out = jax.device_get(sums(graphdef, params, batch))
    total += float(out["nll"])
    steps += float(out["steps"])
  lines = len(order)
  log_scale = float(np.sum(np.log(writer.stats.std)))
  return {
    "lines": lines,
    "steps": int(steps),
    "nats_per_sequence": total / lines,
    "nats_per_step": total / steps,
    "raw_nats_per_sequence": (total + steps * log_scale) / lines,
    "normalisation": {
      "std": writer.stats.std.tolist(),
      "mean": writer.stats.mean.tolist(),
      "mean_subtracted": bool(np.any(writer.stats.mean != 0)),
    },
  }


def legibility_at(
  writer: writer_lib.Writer,
  bias: float,
  seeds: int,
  out_dir: str,
  prime: sample_lib.Prime | None = None,
  sentences: Sequence[str] = SENTENCES,
  tesseract: str | None = None,
  name: str = "",
) -> dict:
  """Write every sentence `seeds` times (one batched call, each line its own draw), read them back, score them:
  CER / WER, the per-character-class error table and, unprimed, the line-shape shares (`line_shape`). `name`
  prefixes the image folder (another sentence set)."""
  texts = [s for _ in range(seeds) for s in sentences]
  samples = writer_lib.write_lines(writer, texts, bias=bias, seed=0, prime=prime, same_style=False)
  tag = f"{name}{'primed' if prime else 'unprimed'}_bias_{bias:g}"
  paths = [
    os.path.join(out_dir, tag, f"s{i % len(sentences):02d}_seed{i // len(sentences)}.png") for i in range(len(texts))
  ]
  shown = sample_lib.display_lines(samples.lines, writer.config)  # read as `write` draws them
  scores = legibility.read_lines(shown, texts, paths, tesseract=tesseract)
  rates = legibility.error_rates(scores)
  per_seed = [
    legibility.error_rates(scores[k * len(sentences) : (k + 1) * len(sentences)])["cer"] for k in range(seeds)
  ]
  sheet = os.path.join(out_dir, f"{tag}.png")
  n = min(len(sentences), 8)
  draw.save_lines_png(shown[:n], [f"{s.text}  →  read: {s.read!r}" for s in scores[:n]], sheet)
  return {
    "bias": bias,
    "primed": prime is not None,
    **rates,
    "cer_per_seed": per_seed,
    "classes": legibility.class_errors(scores),
    **({} if prime else {"line_shape": line_shape.line_shape_rates(samples.lines, _phis(samples))}),
    "finished": int(np.sum(samples.finished_B)),
    "lines": len(texts),
    "sheet": sheet,
    "per_line": [{"text": s.text, "read": s.read, "cer": s.cer, "image": p} for s, p in zip(scores, paths)],
    "_strokes": samples.lines,
  }  # the network's own rate: saved styles prime it


def digits_at(
  writer: writer_lib.Writer,
  bias: float,
  seeds: int,
  out_dir: str,
  tesseract: str | None,
  sentences: Sequence[str] = DIGIT_SENTENCES,
) -> dict:
  """Legibility of `sentences` rich in digits, capitals and punctuation, or why not: characters the writer lacks."""
  missing = sorted({c for s in sentences for c in writer.alphabet.unknown_chars(s)})
  if missing:
    return {"unavailable": f"the writer's alphabet lacks {''.join(missing)!r}"}
  return legibility_at(writer, bias, seeds, out_dir, sentences=sentences, tesseract=tesseract, name="digits_")


def read_sentences(path: str) -> list[str]:
  """The sentences of a text file, one per line (blank lines and lines starting with # skipped, spaces folded);
  EvaluateError naming the file when it cannot be read or holds none."""
  try:
    with open(path, encoding="utf-8") as f:
      rows = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise EvaluateError(f"sentence file {path}: {e}") from None
  sentences = [" ".join(r.split()) for r in rows if r.strip() and not r.lstrip().startswith("#")]
  if not sentences:
    raise EvaluateError(f"sentence file {path} holds no sentence (one per line; # starts a comment)")
  return sentences


def _phis(samples: sample_lib.Samples) -> list[np.ndarray]:
  """The window φ of every line, over its real steps and characters."""
  return [samples.line_phi(b) for b in range(len(samples.lines))]


def fidelity_at(
  writer: writer_lib.Writer,
  valid: ValidationData,
  encoder: fid.HandEncoder,
  *,
  num_forms: int,
  per_form: int,
  bias: float,
  out_dir: str,
  tesseract: str | None = None,
  seed: int = 0,
  adapt_lines: int = 0,
) -> dict:
  """Style fidelity (`evaluation.fidelity`): prime with one line of each of `num_forms` held-out forms, write
  `per_form` unseen sentences in each hand, and find each written line's form by its nearest gallery line (another
  real line of each form); beside it the ceiling (the prime line itself retrieved the same way), chance and the
  primed lines' CER. With `adapt_lines` > 0 the writer first learns each hand (`adaptation.adapt`, its defaults)
  from that many lines of the form: the prime line and others, never the gallery line."""
  raw = [writer.stats.denormalise(x) for x in valid.strokes]
  usable = [i for i, x in enumerate(raw) if fid.judgeable(x)]
  trial = fid.choose_trial(
    [valid.ids[i] for i in usable], num_forms, np.random.default_rng(seed), [valid.texts[i] for i in usable]
  )
  query, gallery = [usable[i] for i in trial.query], [usable[i] for i in trial.gallery]
  gallery_NxD = fid.embed_lines(encoder, [raw[i] for i in gallery])
  real_hits = fid.rank1_hits(fid.embed_lines(encoder, [raw[i] for i in query]), gallery_NxD, np.arange(num_forms))
  all_emb = fid.embed_lines(encoder, [raw[i] for i in usable])
  written, texts, owner = [], [], []
  adapted_on, adapt_seconds = [], []
  for f, q in enumerate(query):
    sentences = [SENTENCES[(f * per_form + j) % len(SENTENCES)] for j in range(per_form)]
    hand = writer
    if adapt_lines:  # the prime line first, then others of the form; lines with characters it cannot write skipped
      same = [q] + [i for i in usable if fid.form_of(valid.ids[i]) == trial.forms[f] and i not in (q, gallery[f])]
      chosen = [i for i in same if not writer.alphabet.count_unknown(valid.texts[i])][:adapt_lines]
      started = time.time()
      if chosen:
        hand = adaptation.adapt(writer, [(raw[i], valid.texts[i]) for i in chosen])[0]
      adapt_seconds.append(time.time() - started)
      adapted_on.append([valid.ids[i] for i in chosen])
    prime = writer_lib.make_prime(hand, raw[q], valid.texts[q], check_text=False)
    written += writer_lib.write_lines(hand, sentences, bias=bias, seed=seed, prime=prime, same_style=False).lines
    texts += sentences
    owner += [f] * per_form
  ranks = fid.retrieval_ranks(encoder, written, gallery_NxD, np.asarray(owner))
  tag = f"fidelity_{'adapted_' if adapt_lines else ''}bias_{bias:g}"
  paths = [os.path.join(out_dir, tag, f"form{owner[i]:02d}_s{i % per_form}.png") for i in range(len(written))]
  shown = sample_lib.display_lines(written, writer.config)
  scores = legibility.read_lines(shown, texts, paths, tesseract=tesseract)
  per_form_rows = []
  for f, form in enumerate(trial.forms):
    mine = [i for i in range(len(written)) if owner[i] == f]
    per_form_rows.append(
      {
        "form": form,
        "prime_line": valid.ids[query[f]],
        "prime_text": valid.texts[query[f]],
        "gallery_line": valid.ids[gallery[f]],
        "prime_retrieved": bool(real_hits[f]),
        "adapted_on": adapted_on[f] if adapt_lines else [],
        "rank1": float(np.mean(ranks[mine] == 1)),
        "ranks": ranks[mine].tolist(),
        "cer": legibility.error_rates([scores[i] for i in mine])["cer"],
        "lines": [
          {
            "text": scores[i].text,
            "read": scores[i].read,
            "cer": scores[i].cer,
            "rank": int(ranks[i]),
            "image": paths[i],
          }
          for i in mine
        ],
      }
    )
  # The hands' own legibility by the same reader: their real prime lines, drawn as written lines are.
  real = legibility.read_lines(
    sample_lib.display_lines([raw[i] for i in query], writer.config),
    [valid.texts[i] for i in query],
    tesseract=tesseract,
  )
  for row, score in zip(per_form_rows, real):
    row["prime_cer"] = score.cer
  sheet = os.path.join(out_dir, f"{tag}.png")
  hardest_hands_sheet(per_form_rows, [raw[i] for i in query], dict(zip(paths, shown)), sheet)
  return {
    "bias": bias,
    "forms": num_forms,
    "sentences_per_form": per_form,
    "chance": 1.0 / num_forms,
    "rank1": float(np.mean(ranks == 1)),
    "mean_rank": float(np.mean(ranks)),
    "ceiling_these_forms": float(np.mean(real_hits)),
    "ceiling": fid.ceiling(
      all_emb,
      [valid.ids[i] for i in usable],
      num_forms,
      draws=200,
      seed=seed + 1,
      texts=[valid.texts[i] for i in usable],
    ),
    **legibility.error_rates(scores),
    "real_lines_cer": legibility.error_rates(real)["cer"],
    "sheet": sheet,
    "adapt_lines": adapt_lines,
    "adapt_seconds": adapt_seconds,
    "per_form": per_form_rows,
  }


def hardest_hands_sheet(
  per_form: list[dict], primes: list[np.ndarray], drawn: dict[str, np.ndarray], path: str, count: int = 6
) -> None:
  """A sheet of the `count` hands written least legibly (then least recognisably): each prime line, then the lines
  written in it (`drawn`: image path -> the line as drawn) with their rank and what tesseract read."""
  hardest = sorted(range(len(per_form)), key=lambda f: (-per_form[f]["cer"], per_form[f]["rank1"]))[:count]
  rows, captions = [], []
  for f in hardest:
    rows.append(primes[f])
    captions.append(f"{per_form[f]['form']} prime: {per_form[f]['prime_text']}")
    for line in per_form[f]["lines"]:
      rows.append(drawn[line["image"]])
      captions.append(f"  written (rank {line['rank']}): {line['text']}  →  read: {line['read']!r}")
  draw.save_lines_png(rows, captions, path)


def fidelity_report(
  writer: writer_lib.Writer,
  valid: ValidationData | None,
  encoder: fid.HandEncoder,
  settings: Fidelity,
  out_dir: str,
  tesseract: str,
) -> dict:
  """The fidelity section of a report, or why it could not be measured (no validation data, too few forms)."""
  if valid is None:
    return {
      "unavailable": "it needs the writer's validation data (its held-out hands), which is not here; give --iam_path"
    }
  kw = {"num_forms": settings.forms, "per_form": settings.sentences, "bias": settings.bias, "out_dir": out_dir}
  try:
    primed = fidelity_at(writer, valid, encoder, tesseract=tesseract, **kw)
    if settings.adapt_lines:
      primed["adapted"] = fidelity_at(
        writer, valid, encoder, tesseract=tesseract, adapt_lines=settings.adapt_lines, **kw
      )
    return primed
  except fid.FidelityError as e:
    return {"unavailable": str(e)}


def save_styles(workdir: str, result: dict, count: int) -> list[str]:
  """Save the `count` most legible lines of one legibility result (distinct sentences, lowest CER first, finished
  lines only) as the writer's own styles WORKDIR/styles/style_K.npz; returns their paths.

  These are the model's samples, not training strokes, so a shipped writer carries no training data."""
  order = sorted(range(len(result["per_line"])), key=lambda i: (result["per_line"][i]["cer"], i))
  chosen, seen = [], set()
  for i in order:
    text = result["per_line"][i]["text"]
    if text not in seen:
      seen.add(text)
      chosen.append(i)
    if len(chosen) == count:
      break
  folder = os.path.join(workdir, writer_lib.STYLES_DIR)
  os.makedirs(folder, exist_ok=True)
  paths = []
  for k, i in enumerate(chosen):
    path = os.path.join(folder, f"style_{k}.npz")
    writer_lib.save_style(path, result["_strokes"][i], result["per_line"][i]["text"])
    paths.append(path)
  return paths


def overlap(sentences: Sequence[str], train_texts: Sequence[str]) -> list[str]:
  """The sentences that occur (case-insensitively, as substrings) in some training text."""
  lowered = [t.lower() for t in train_texts]
  return [s for s in sentences if any(s.lower() in t for t in lowered)]


def _check_arguments(
  biases: Sequence[float], seeds: int, styles: int, styles_bias: float, stop_rule: str | None, resample: str | None
) -> None:
  """EvaluateError (or SamplingError) for arguments that make no sense, before any work."""
  if stop_rule is not None:
    sample_lib.check_choice(stop_rule, sample_lib.STOP_RULES, "--stop_rule", EvaluateError)
  if resample is not None:
    sample_lib.check_choice(resample, sample_lib.RESAMPLE_MODES, "--resample", EvaluateError)
  if not biases or any(not math.isfinite(b) or b < 0 for b in biases):
    raise EvaluateError(f"--biases must be finite numbers >= 0, got {list(biases)}")
  if seeds < 1:
    raise EvaluateError(f"--seeds must be >= 1, got {seeds}")
  if styles < 0 or (styles and styles_bias not in biases):
    raise EvaluateError(
      f"--save_styles={styles} needs a count >= 0 and --styles_bias ({styles_bias}) among --biases {list(biases)}"
    )


def _synthesis_writer(
  workdir: str | None, step: int | None, raw_weights: bool, stop_rule: str | None, resample: str | None
) -> writer_lib.Writer:
  """The writer to judge, with the sampling overrides applied; EvaluateError for a prediction network."""
  writer = writer_lib.load_writer(workdir, step, raw_weights)
  if stop_rule is not None:
    writer.config.sample.stop_rule = stop_rule
  if resample is not None:
    writer.config.sample.resample = resample
  if not writer.conditional:
    raise EvaluateError(
      f"the checkpoint in {writer.workdir} is a prediction network: legibility needs a synthesis "
      "network (it writes text)"
    )
  return writer


def _output_folder(writer: writer_lib.Writer, out_dir: str | None, raw_weights: bool) -> str:
  """`out_dir`, or WORKDIR/eval/step_N (./evaluation_NAME/eval/step_N for a shipped writer); made, or refused."""
  if out_dir is None:
    shipped = os.path.dirname(writer.workdir) == os.path.abspath(writer_lib.PRETRAINED_DIR)
    base = os.path.abspath(f"evaluation_{os.path.basename(writer.workdir)}") if shipped else writer.workdir
    out_dir = os.path.join(base, "eval", f"step_{writer.step}" + ("_raw" if raw_weights else ""))
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise EvaluateError(f"--out={out_dir} is a file; give a folder")
  writer_lib.check_output_path(os.path.join(out_dir, "report.json"), "--out")  # before any sampling
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise EvaluateError(f"--out={out_dir}: cannot make the folder ({e.strerror or e})") from None
  return out_dir


def _validation_section(
  report: dict, writer: writer_lib.Writer, iam_path: str | None, nll: bool, sentences: Sequence[str] = SENTENCES
) -> ValidationData | None:
  """The validation data (None, and the reason in `report`, when it is not on this machine), with the NLL and
  the overlap of the sentences with the training texts added to `report`."""
  try:
    valid = load_validation(writer, iam_path)
  except UserError as e:
    report["nll"] = None
    report["nll_unavailable"] = f"the training data is not available here, so no NLL: {' '.join(str(e).split())}"
    return None
  report["overlap_with_training_texts"] = overlap(sentences, valid.train_texts)
  if nll:
    report["nll"] = {"data": valid.description, **validation_nll(writer, valid.strokes, valid.texts)}
  return valid


def _validation_style(
  writer: writer_lib.Writer, valid: ValidationData | None, index: int, report: dict
) -> writer_lib.StyleInk:
  """Validation line `index` as a style to prime with; EvaluateError when there is no such line."""
  if valid is None:
    raise EvaluateError(f"--style={index} needs the validation data: {report['nll_unavailable']}")
  if not 0 <= index < len(valid.strokes):
    raise EvaluateError(f"--style={index}: the validation split has {len(valid.strokes)} lines")
  return writer_lib.StyleInk(
    f"validation line {index}", valid.texts[index], offsets_Tx3=writer.stats.denormalise(valid.strokes[index])
  )


def evaluate(
  workdir: str | None,
  step: int | None,
  *,
  biases: Sequence[float],
  seeds: int,
  out_dir: str | None,
  prime_style: writer_lib.StyleInk | None = None,
  style_index: int | None = None,
  iam_path: str | None = None,
  nll: bool = True,
  styles: int = 0,
  styles_bias: float = 0.75,
  stop_rule: str | None = None,
  raw_weights: bool = False,
  resample: str | None = None,
  fidelity: Fidelity | None = None,
  sentences: Sequence[str] = SENTENCES,
  digit_sentences: Sequence[str] = DIGIT_SENTENCES,
) -> dict:
  """Evaluate one checkpoint (default: the newest; no workdir: the shipped model); writes and returns the report.
  `stop_rule` and `resample` override the checkpoint's config.sample fields; `raw_weights` judges the trained
  parameters of a run that kept a moving average (by default the average is judged, as `write` uses it);
  `fidelity` (with forms > 0) adds the style-fidelity section (`fidelity_at`). `sentences` and `digit_sentences`
  replace the everyday and the digit-rich sentence sets (another list, to check a figure independently; no digit
  sentences: no digit section)."""
  _check_arguments(biases, seeds, styles, styles_bias, stop_rule, resample)
  encoder = fidelity.encoder() if fidelity is not None and fidelity.forms else None
  tesseract = legibility.check_tesseract()  # once, before any work
  t0 = time.time()
  writer = _synthesis_writer(workdir, step, raw_weights, stop_rule, resample)
  out_dir = _output_folder(writer, out_dir, raw_weights)
  if styles:  # written into the writer's folder (a shipped writer's may be read-only): checked before any sampling
    writer_lib.check_output_path(os.path.join(writer.workdir, writer_lib.STYLES_DIR, "style_0.npz"), "--save_styles")
  report = {
    "workdir": writer.workdir,
    "step": writer.step,
    "data_source": writer.config.data.source,
    "weights": "moving average" if writer.ema else "trained",
    "sentences": list(sentences),
    "digit_sentences": list(digit_sentences),
    "seeds": seeds,
    "stop_rule": writer.config.sample.stop_rule,
    "end_of_text": end_of_text.has_end(writer.alphabet),  # the writer reads the end symbol after each text
    "resample": writer.config.sample.resample,
    "downsample": int(writer.config.data.downsample),
  }
  writer.alphabet.check_known(sentences, what="the sentences to write")  # before any work; digit sets say what lacks
  need_data = nll or style_index is not None or encoder is not None
  valid = _validation_section(report, writer, iam_path, nll, sentences) if need_data else None
  if style_index is not None:
    prime_style = _validation_style(writer, valid, style_index, report)
  report["legibility"] = [
    legibility_at(writer, b, seeds, out_dir, sentences=sentences, tesseract=tesseract) for b in biases
  ]
  digits_bias = DIGITS_BIAS if DIGITS_BIAS in biases else biases[0]
  if digit_sentences:  # none: the digit set is not measured (e.g. judging every checkpoint of a run)
    report["digits"] = digits_at(writer, digits_bias, seeds, out_dir, tesseract, digit_sentences)
  if prime_style is not None:
    offsets = writer_lib.style_offsets(writer, prime_style)
    prime = writer_lib.make_prime(writer, offsets, prime_style.text, check_text=style_index is None)
    report["primed_with"] = prime_style.text
    report["legibility_primed"] = [
      legibility_at(writer, b, seeds, out_dir, prime, sentences=sentences, tesseract=tesseract) for b in biases
    ]
  if encoder is not None:
    report["fidelity"] = fidelity_report(writer, valid, encoder, fidelity, out_dir, tesseract)
  if styles:
    chosen = next(r for r in report["legibility"] if r["bias"] == styles_bias)
    report["styles"] = save_styles(writer.workdir, chosen, styles)
  for r in [*report["legibility"], *report.get("legibility_primed", []), report.get("digits", {})]:
    r.pop("_strokes", None)
  report["seconds"] = time.time() - t0
  path = os.path.join(out_dir, "report.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(report, f, indent=1, ensure_ascii=False)
  report["path"] = path
  return report


def summary(report: dict) -> str:
  """The report as a few human-readable lines."""
  drawn = (
    f", lines drawn at {report['downsample']}x the written rate ({report['resample']})"
    if report.get("downsample", 1) > 1 and report.get("resample") == "spline"
    else ""
  )
  out = [
    f"{report['workdir']} step {report['step']} ({report['data_source']} data, {report['weights']} weights{drawn})"
  ]
  nll = report.get("nll")
  if nll:
    norm = nll["normalisation"]
    out.append(
      f"  validation NLL: {nll['nats_per_sequence']:.1f} nats/sequence, {nll['nats_per_step']:.4f} "
      f"nats/step over {nll['lines']} lines ({nll['data']}); offsets divided by std "
      f"({norm['std'][0]:.3g}, {norm['std'][1]:.3g})"
      f"{', mean subtracted' if norm['mean_subtracted'] else ''}; in raw units "
      f"{nll['raw_nats_per_sequence']:.1f} nats/sequence"
    )
  else:
    out.append(f"  {report.get('nll_unavailable', 'NLL not computed')}")
  if report.get("overlap_with_training_texts"):
    out.append(f"  warning: sentences found in training texts: {report['overlap_with_training_texts']}")
  for key, label in (("legibility", "unprimed"), ("legibility_primed", "primed")):
    for r in report.get(key, []):
      seeds = ", ".join(f"{c:.0%}" for c in r["cer_per_seed"])
      out.append(
        f"  {label:8s} bias {r['bias']:<4g}  CER {r['cer']:6.1%}  WER {r['wer']:6.1%}  "
        f"(per seed {seeds}; {r['finished']}/{r['lines']} lines finished by the window)"
      )
  digits = report.get("digits")
  if digits and "unavailable" in digits:
    out.append(f"  digits not measured: {digits['unavailable']}")
  elif digits:
    classes = digits["classes"]["classes"]
    rates = ", ".join(f"{k} {v['rate']:.0%}" for k, v in classes.items() if v["rate"] is not None)
    worst = ", ".join(f"{a!r}->{b!r} x{n}" for a, b, n in digits["classes"]["confusions"][:5])
    out.append(
      f"  digits   bias {digits['bias']:<4g}  CER {digits['cer']:6.1%}  WER {digits['wer']:6.1%}  (errors by class: "
      f"{rates}; most confused: {worst})"
    )
  for r in report.get("legibility", []):
    shape = r.get("line_shape")
    if shape:
      out.append(
        f"  line ends bias {r['bias']:<4g}  ink after the text {shape['ink_after_text']:.1%}, baseline jumps "
        f"{shape['baseline_jumps']:.1%} of {shape['lines']} lines"
      )
  fidelity = report.get("fidelity")
  if fidelity and "unavailable" in fidelity:
    out.append(f"  fidelity not measured: {fidelity['unavailable']}")
  elif fidelity:
    out.append(
      f"  fidelity bias {fidelity['bias']:<4g}  rank-1 {fidelity['rank1']:6.1%} of written lines among "
      f"{fidelity['forms']} held-out hands (ceiling, a real line of the hand: {fidelity['ceiling']:.1%}, "
      f"{fidelity['ceiling_these_forms']:.0%} on these forms; chance {fidelity['chance']:.1%}); "
      f"primed CER {fidelity['cer']:.1%} (the hands' own prime lines read at {fidelity['real_lines_cer']:.1%})"
    )
    adapted = fidelity.get("adapted")
    if adapted:
      out.append(
        f"  adapted  bias {adapted['bias']:<4g}  rank-1 {adapted['rank1']:6.1%} after learning each hand from "
        f"{adapted['adapt_lines']} of its lines (median {np.median(adapted['adapt_seconds']):.0f} s each); "
        f"CER {adapted['cer']:.1%}"
      )
  if report.get("styles"):
    out.append(f"  styles saved: {', '.join(report['styles'])}")
  out.append(f"  report: {report['path']}")
  return "\n".join(out)
