"""Default hyperparameters shared by `configs/prediction.py` and `configs/synthesis.py`.

Every field is documented where it is set. `configs/*.py:get_config(arg)` start from `base_config(mode)` and
apply the variant (`paper` default, `small` CPU demo, `tiny` tests).
"""

import ml_collections

from handwriting_jax.errors import ConfigError

# The values of the training's choice fields (checked by `config.validation`; `training/` implements each one).
OPTIMIZERS = ("rmsprop", "adam")  # optim.name
SCHEDULES = ("constant", "cosine")  # optim.schedule
CLIP_MODES = ("graves", "global_norm", "none")  # optim.clip_mode
WEIGHT_NOISE_MODES = ("none", "fixed", "adaptive")  # optim.weight_noise
PARALLEL_MODES = ("jit", "pmap")  # parallel


def data_config() -> ml_collections.ConfigDict:
  """Data source, preprocessing and batching fields (see docs/training.md)."""
  c = ml_collections.ConfigDict()
  # "embedded": Hershey-font corpus generated on the fly (no download). "iam": IAM-OnDB at `iam_path`.
  c.source = "embedded"
  # Folder holding lineStrokes-all.tar.gz / ascii-all.tar.gz (or extracted lineStrokes/ ascii/) and the
  # split lists trainset.txt, testset_v.txt, testset_t.txt, testset_f.txt.
  c.iam_path = ""
  # Where parsed data is cached as .npz; empty = ~/.cache/handwriting_jax.
  c.cache_dir = ""
  # Malformed IAM files: False = warn, name the file and skip it; True = raise.
  c.strict = False
  # Lines with more points / characters than this are dropped (counted in the load summary).
  c.max_points = 1200
  c.max_chars = 80
  # A pen-down jump longer than this (in units of the median line height… see data/strokes.py) is absurd.
  c.jump_threshold = 1000.0
  c.jump_mode = "split"  # "split": lift the pen there; "drop": drop the line.
  c.smoothing = "none"  # "none" | "savgol" (Savitzky-Golay over each stroke)
  c.savgol_window = 7
  c.savgol_order = 3
  c.align = False  # slant/baseline alignment of each line
  c.normalise_mean = False  # subtract the mean offset as well as dividing by the std
  # Alphabet: empty = every character of the training transcriptions; else exactly these characters.
  c.alphabet = ""
  # Embedded corpus.
  c.embedded = ml_collections.ConfigDict()
  c.embedded.num_lines = 6000  # training lines
  c.embedded.valid_lines = 300  # validation lines (texts not in training where possible)
  c.embedded.seed = 0  # the whole corpus is a pure function of this seed
  c.embedded.min_words = 1  # words per line, drawn uniformly in [min_words, max_words]
  c.embedded.max_words = 5
  c.embedded.num_writers = 64  # synthetic writer styles used for training lines
  c.embedded.points_per_char = 14.0  # pen speed: mean points per character (varied per writer)
  # Hershey fonts the writers draw from (comma-separated; "scripts", "cursive"; they share the lower case).
  c.embedded.fonts = "scripts,cursive"
  c.embedded.x_height = 30.0  # size of the lower-case letters in output units (before normalisation)
  c.embedded.valid_writers = 16  # extra writer styles seen only in validation (held out)
  c.embedded.valid_new_writer_fraction = 0.5  # share of validation lines written by held-out writers
  # Batching.
  c.batch_size = 32  # global batch size
  c.num_buckets = 4  # padded lengths (bounded recompiles)
  c.shuffle_seed = 0
  # Curriculum on line length: list of (until_step, max_points); empty = full lines from step 0.
  c.curriculum = ()
  # Word pieces (data/pieces.py): train the first `pieces_until` steps on lines cut at the pen-up gaps between words
  # into pieces of 1..piece_max_words words (short, aligned sequences); 0 = off. Curriculum stages come after.
  c.pieces_until = 0
  c.piece_max_words = 3
  # Rare characters (data/batches.py:oversampled): every training line (or word piece) holding one of
  # `oversample_chars` is used `oversample_factor` times per epoch; IAM-OnDB has few digits, capitals Q/X/Z and
  # symbols, and a writer misreads what it rarely saw. "" or 1 = each line once.
  c.oversample_chars = ""
  c.oversample_factor = 1
  # Digit-rich lines (data/synthetic.py): this many lines of numbers (phone numbers, times, dates, prices) among words,
  # names and codes in capitals, written in Hershey's print font by the embedded corpus's synthetic writers at the real
  # lines' size and pen rate, added to the IAM training split (validation stays real); IAM-OnDB has a digit on 3% of
  # its lines. 0 = none.
  c.synthetic_lines = 0
  # Step at which the synthetic lines leave the training lines (the rest of the run on real lines only); 0 = never.
  c.synthetic_until = 0
  # End-of-text symbol (data/end_of_text.py): every text ends in one more character and every line in a pen-up move
  # after its last character, so the network learns to lift the pen and move its window past the text when the text
  # is written (without it, the steps before the window leaves the last character often draw a stray mark).
  c.end_of_text = False
  # Augmentation (data/augment.py): each training line (or word piece) drawn with a random shear x += k·y, |k| <
  # augment_slant, then x and y scaled by exp(u), |u| < augment_scale, drawn per line and batch; 0 = as written.
  c.augment_slant = 0.0
  c.augment_scale = 0.0
  # Keep every k-th point of each stroke and its last point (data/strokes.py, step 5); 1 = every point. Changes
  # the sequences, so NLL in nats per sequence is then not comparable with full-rate figures (the paper's).
  c.downsample = 1
  return c


def model_config(mode: str) -> ml_collections.ConfigDict:
  """Network fields; defaults are the paper's (section 4 / 5)."""
  c = ml_collections.ConfigDict()
  c.mode = mode  # "prediction" (section 4) or "synthesis" (section 5)
  c.num_layers = 3
  c.hidden_size = 400
  c.num_mixtures = 20
  c.num_window_gaussians = 10
  c.window_variant = "exp"  # "exp": the paper (eqs. 48-51); "softplus": softplus and κ̂/25 (open ports)
  c.peepholes = True  # diagonal peephole weights of eqs. 7-11
  c.init_scale = 0.075  # std of the normal initialisation of every weight matrix
  c.forget_bias = 1.0  # initial forget-gate bias (not in the paper; 0 reproduces a zero init)
  c.remat = False  # recompute the gates in the backward pass: memory grows with the carries, not the gates
  # Time steps per chunk of the recurrent scans: each chunk's input projection (and, with remat, its gates in the
  # backward pass) is one large matmul; no full-length projection is materialised. Same numbers for any value.
  c.remat_chunk = 50
  c.scan_unroll = 1  # lax.scan unroll factor of the recurrent scans
  # Matmul input dtype (state and accumulation stay fp32): "float32", "bfloat16", "float16", or "auto": bfloat16 where
  # the chip multiplies it natively (GPU, TPU, a CPU with AVX512_BF16 / AMX-BF16 / Arm BF16), float32 elsewhere.
  c.compute_dtype = "float32"
  # Graves clipping (set by config.optim.clip_mode == "graves"; 0 disables): bounds on the derivatives
  # flowing into the LSTM pre-activations and into the network outputs during backprop.
  c.lstm_clip = 10.0
  c.output_clip = 100.0
  return c


def optim_config() -> ml_collections.ConfigDict:
  """Optimiser fields; defaults are Graves' RMSProp (eqs. 38-41) with `graves` derivative clipping."""
  c = ml_collections.ConfigDict()
  c.name = "rmsprop"  # "rmsprop": centred RMSProp with momentum (Graves); "adam"
  c.learning_rate = 1e-4
  c.decay = 0.95  # RMSProp ℵ
  c.momentum = 0.9  # RMSProp ℶ
  c.eps = 1e-4  # RMSProp ℸ, inside the square root
  c.b1 = 0.9  # Adam
  c.b2 = 0.999  # Adam
  c.schedule = "constant"  # "constant" | "cosine" (decay to lr * final_fraction over train.num_steps)
  c.warmup_steps = 0
  c.final_fraction = 0.1
  # "graves": clip derivatives into LSTM pre-activations to ±model.lstm_clip and into the outputs to
  # ±model.output_clip during backprop (RNNLIB); "global_norm": rescale the gradient to max_grad_norm;
  # "none".
  c.clip_mode = "graves"
  c.max_grad_norm = 10.0
  # Weight noise (Graves 2011; handwriting_jax/training/weight_noise.py): "none"; "fixed" (w = μ + std·ε per batch);
  # "adaptive" (a trained σ per weight, initialised to weight_noise_std, plus the complexity cost L_C / N).
  c.weight_noise = "none"
  c.weight_noise_std = 0.01
  return c


def train_config() -> ml_collections.ConfigDict:
  """Loop fields: length, logging, evaluation, checkpoints, samples."""
  c = ml_collections.ConfigDict()
  c.num_steps = 100_000
  c.log_every = 50  # console line and TensorBoard scalars
  c.eval_every = 1000  # validation loss (nats per sequence and per step)
  c.eval_batches = 16  # validation batches (a fixed set); 0 = one full pass over the validation split
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.sample_every = 2000  # write samples and an attention plot into WORKDIR/samples; 0 = never
  c.init_from = ""  # a workdir or params-only export whose parameters a new run starts from (same network)
  # Exponential moving average of the parameters (step.update_ema), kept in the checkpoints and used for validation,
  # training samples, `write`, `evaluate` and exports (their --raw_weights flag takes the trained ones); 0 = none.
  c.ema_decay = 0.0
  return c


def base_config(mode: str) -> ml_collections.ConfigDict:
  """The paper configuration of `mode` ("prediction" or "synthesis")."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.parallel = "jit"  # "jit": jax.jit with a 1-D `data` mesh (default); "pmap": jax.pmap with lax.pmean
  c.model = model_config(mode)
  c.data = data_config()
  c.optim = optim_config()
  c.train = train_config()
  c.sample = ml_collections.ConfigDict()
  c.sample.bias = 0.75  # sampling bias b (eqs. 61-62) for samples written during training
  c.sample.texts = ("handwriting in jax", "a quick brown fox jumps")  # written during training
  c.sample.max_steps_per_char = 40  # length cap: points per character of the text
  c.sample.max_steps = 1000  # length cap for unconditional (prediction) samples
  # When a line ends (sample.py): "paper" = the first step the window has passed the text (section 5.3); "lift" =
  # the first pen lift after that, so the stroke under way (often the last letter) is not cut off; "finish" = then
  # also the last word's late strokes (t bars, i dots: begun over the ink), ending at a stroke begun clear right of it.
  c.sample.stop_rule = "paper"
  # How a network trained on downsampled lines (data.downsample = k > 1) shows what it writes: "spline" = a cubic
  # spline through each stroke, k points per written point (the pen's own rate: round letters stay round); "none" =
  # the written points joined by straight lines. Only what is drawn or returned changes, never what the network reads.
  c.sample.resample = "spline"
  return c


def _fill(saved: dict, default: ml_collections.ConfigDict) -> dict:
  """The fields of `default`, recursively, with their values from `saved` where it has them."""
  out = {}
  for key, value in default.items():
    if isinstance(value, ml_collections.ConfigDict):
      out[key] = _fill(saved[key], value) if isinstance(saved.get(key), dict) else value.to_dict()
    else:
      out[key] = saved.get(key, value)
  return out


def with_defaults(saved: dict) -> ml_collections.ConfigDict:
  """A checkpoint's saved config brought up to the current fields, so older checkpoints stay usable: fields added
  since it was written take their defaults (which keep the old behaviour), and fields since removed are dropped
  (each selected nothing the checkpoint depends on; e.g. `model.hoisted_backward`, which chose between the
  hand-written and the autodiff backward pass of the same numbers)."""
  mode = saved.get("model", {}).get("mode", "synthesis")
  return ml_collections.ConfigDict(_fill(saved, base_config(mode)))


# Each variant's field overrides (dotted path -> value), applied in order on top of the paper configuration.
_SMALL = {  # "small": the CPU demo on the embedded corpus
  "model.num_layers": 3,
  "model.hidden_size": 128,
  "model.num_mixtures": 10,
  "model.num_window_gaussians": 6,
  "model.window_variant": "softplus",
  "optim.name": "adam",
  "optim.learning_rate": 3e-3,
  "optim.schedule": "cosine",
  "optim.warmup_steps": 100,
  "optim.clip_mode": "global_norm",
  "optim.max_grad_norm": 100.0,
  "data.batch_size": 32,
  "data.num_buckets": 4,
  "data.max_points": 600,  # the embedded corpus's 99th percentile: drops ~1% of lines, saves a third of the time
  "data.curriculum": ((600, 120), (1500, 220)),
  "train.num_steps": 3000,
  "train.log_every": 25,
  "train.eval_every": 250,
  "train.eval_batches": 8,
  "train.checkpoint_every": 250,
  "train.sample_every": 500,
}
# "iam_small", on top of "small": the CPU recipe for IAM-OnDB (docs/training.md, "Real handwriting on a CPU"): the
# small network, 1500 steps of word pieces (data/pieces.py), then whole lines up to 800 raw points (83% of the training
# lines), one point in three kept (data.downsample: a third of the steps per line, so steps cost a third and the window
# has a third as far to go; real IAM lines read back by OCR as well at 1/3 as at full rate), the mean offset removed
# (IAM baselines drift), and a moving average of the parameters (train.ema_decay: what validation, samples, `write` and
# `evaluate` use: the run's last checkpoint reads like the mean of its last checkpoints, docs/training.md); lines end
# by the "finish" stop rule (a final t keeps its bar: docs/evaluation.md, "A clean end of line").
# Give the data: --config.data.iam_path=/data/iam-ondb.
_IAM_SMALL = {
  "data.source": "iam",
  "data.max_points": 800,
  "data.normalise_mean": True,
  "data.downsample": 3,
  "data.curriculum": (),
  "data.pieces_until": 1500,
  "train.num_steps": 7000,
  "train.ema_decay": 0.999,
  "train.eval_every": 500,
  "train.checkpoint_every": 500,
  "train.keep_checkpoints": 10,
  "train.sample_every": 1000,
  "sample.stop_rule": "finish",
}
# "iam_fast", on top of "iam_small": an IAM writer trained against the clock on 2 cores (docs/performance.md, "Time to
# legible"): batches of 8 lines (a step costs about a third of a 32-line one on a CPU: 11500 updates in about 13
# minutes), word pieces until step 2300, the cosine schedule ending with the run; bf16 matmuls where the CPU has bf16
# instructions (model.compute_dtype "auto"; fp32 elsewhere); a checkpoint every 1000 steps, all kept, to be judged.
_IAM_FAST = {
  "model.compute_dtype": "auto",
  "data.batch_size": 8,
  "data.pieces_until": 2300,
  "train.num_steps": 11500,
  "train.eval_every": 1000,
  "train.checkpoint_every": 1000,
  "train.keep_checkpoints": 12,
}
_TINY = {  # "tiny": a network and corpus small enough for the tests
  "model.num_layers": 2,
  "model.hidden_size": 16,
  "model.num_mixtures": 3,
  "model.num_window_gaussians": 2,
  "data.embedded.num_lines": 64,
  "data.embedded.valid_lines": 16,
  "data.embedded.max_words": 2,
  "data.batch_size": 8,
  "data.num_buckets": 2,
  "optim.name": "adam",
  "optim.learning_rate": 1e-2,
  "train.num_steps": 20,
  "train.log_every": 5,
  "train.eval_every": 10,
  "train.eval_batches": 2,
  "train.checkpoint_every": 10,
  "train.sample_every": 0,
}
# Variant name -> its override tables, applied in order ("" and "paper" are the paper configuration itself).
_VARIANTS: dict[str, tuple[dict, ...]] = {
  "": (),
  "paper": (),
  "small": (_SMALL,),
  "iam_small": (_SMALL, _IAM_SMALL),
  "iam_fast": (_SMALL, _IAM_SMALL, _IAM_FAST),
  "tiny": (_TINY,),
}


def _set_fields(c: ml_collections.ConfigDict, overrides: dict) -> None:
  """Assign each dotted path of `overrides` in `c`, in order: a variant is a table of plain field assignments."""
  for path, value in overrides.items():
    *parents, name = path.split(".")
    node = c
    for parent in parents:
      node = getattr(node, parent)
    setattr(node, name, value)


def apply_variant(c: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """Apply variant "" / "paper" (the paper), "small" (CPU demo), "iam_small" / "iam_fast" (IAM on a CPU) or "tiny"
  (tests) to `c`."""
  tables = _VARIANTS.get(variant) if isinstance(variant, str) else None  # non-strings (even unhashable) are unknown
  if tables is None:
    known = ", ".join(repr(name) for name in _VARIANTS if name)
    raise ConfigError(f"unknown config variant {variant!r}; expected one of {known}")
  for overrides in tables:
    _set_fields(c, overrides)
  return c
