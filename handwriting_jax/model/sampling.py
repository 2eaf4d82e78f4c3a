"""Sampling handwriting from a trained network (Graves 2013, sections 4.2, 5.3 and 5.4).

One jitted `jax.lax.scan` over time samples a whole batch of lines: no Python loop per step. The prediction network
writes unconditionally; the synthesis network writes given text, and stops a line when the window has moved past its
last character (`φ(t, U+1) > φ(t, u)` for all `u ≤ U`, section 5.3) or at a length cap proportional to the text.
Sampling bias `b` sharpens the mixture (eqs. 61-62). Style priming (section 5.4) first runs the network with teacher
forcing over a real line, conditioned on `prime text + new text`, then samples on from that state.

Conventions: the network's input at step t is the point sampled at step t-1 (`(0, 0, 1)` first, or the last prime
point after priming); the point sampled at step t is row t of the output. Rows after a line's end are zero and masked
out; the last real row of a finished line has `eos = 1` (the pen is lifted where the line stops; `line_end`). Each
line draws its random numbers from its own key (`jax.random.split(key, B)[b]` folded with the step), so line b of a
batch depends on the seed and b only, not on the other lines.
"""

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from handwriting_jax.data import end_of_text
from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.errors import UserError
from handwriting_jax.model import mdn, networks, window

START_POINT = (0.0, 0.0, 1.0)  # x_1 of the paper: the first input of every line


class SamplingError(UserError, ValueError):
  """A sampling request that cannot be served (empty text, missing alphabet, bad prime...)."""


@dataclasses.dataclass(frozen=True)
class Prime:
  """A real line to imitate (section 5.4): its normalised offsets [T, 3] and its transcription."""

  strokes_Tx3: np.ndarray
  text: str


@dataclasses.dataclass
class Samples:
  """A batch of sampled lines (numpy). Time axis T = the scan length; rows at and after `lengths[b]` are zero.

  `strokes_BxTx3` are normalised offsets (what the network writes); `lines` are the real rows of each line,
  de-normalised when statistics were given (else normalised). `phi_BxTxU` / `kappa_BxTxK` (synthesis only; U
  covers `texts[b]`, which includes the prime text when primed) and `mixture` (MixtureParams with leading [B, T],
  after the bias) are per step, for attention and density plots.
  """

  strokes_BxTx3: np.ndarray
  mask_BxT: np.ndarray
  lengths_B: np.ndarray
  finished_B: np.ndarray  # True when the stop rule ended the line (False: length cap or unconditional)
  lines: list[np.ndarray]
  texts: list[str]
  mixture: mdn.MixtureParams
  phi_BxTxU: np.ndarray | None = None
  kappa_BxTxK: np.ndarray | None = None

  def line_phi(self, b: int) -> np.ndarray:
    """φ of line b over its real steps and characters, [lengths[b], len(texts[b])] (synthesis only)."""
    if self.phi_BxTxU is None:
      raise SamplingError("unconditional samples have no attention window")
    return self.phi_BxTxU[b, : self.lengths_B[b], : len(self.texts[b])]

  def line_mixture(self, b: int, stats=None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({pi, mu, sigma, rho} over line b's real steps, end-of-stroke probability [T]) for `draw.plot_density`;
    row t predicts row t of the line. De-normalised with `stats` (a NormStats) when given, like `lines`."""
    n = self.lengths_B[b]
    m = self.mixture
    mixture = {
      "pi": np.exp(m.log_pi[b, :n]),
      "mu": m.mu[b, :n],
      "sigma": np.exp(m.log_sigma[b, :n]),
      "rho": np.tanh(m.rho_hat[b, :n]),
    }
    if stats is not None:
      mixture["mu"] = mixture["mu"] * stats.std + stats.mean
      mixture["sigma"] = mixture["sigma"] * stats.std
    return mixture, 1.0 / (1.0 + np.exp(-m.eos_logit[b, :n]))


def window_finished(phi_BxV: jax.Array, lengths_B: jax.Array) -> jax.Array:
  """The paper's stop rule (section 5.3): φ(t, U+1) > φ(t, u) for all u ≤ U, per line of text length U.

  `phi_BxV` holds φ(t, u) for u = 1..V with V > max U (column u-1 is position u); positions past U+1 are ignored.
  """
  v = phi_BxV.shape[-1]
  pos = jnp.arange(v)[None, :]
  lengths = lengths_B[:, None]
  phi_end = jnp.take_along_axis(phi_BxV, lengths, axis=-1)[:, 0]
  phi_text_max = jnp.max(jnp.where(pos < lengths, phi_BxV, -jnp.inf), axis=-1)
  return phi_end > phi_text_max


def _end_phi(aux: dict, num_positions: int) -> jax.Array:
  """φ(t, u) for u = 1..num_positions from the step's window parameters (eq. 46), without the text mask."""
  return window.window_phi(aux["alpha"], aux["beta"], aux["kappa"], num_positions)


STOP_RULES = ("paper", "lift", "finish")
LATE_STROKES = 3  # "finish": strokes a line may begin after the window has passed its text (i dots, t bars)


class PenTrack(NamedTuple):
  """What the "finish" stop rule follows along each line [B]: x in raw units, 0 where the line starts."""

  x_B: jax.Array  # the pen's x after the kept points
  right_B: jax.Array  # the right edge of the kept ink
  late_B: jax.Array  # strokes begun after the window passed the text
  peak_B: jax.Array  # the largest φ on the last character so far
  stray_B: jax.Array  # the stroke under way began after that peak, clear to the right of the ink before it


def start_track(batch: int) -> PenTrack:
  """The track of lines not yet begun: the pen at 0, no ink, no late stroke, no window weight seen."""
  zeros = jnp.zeros((batch,), jnp.float32)
  return PenTrack(zeros, zeros, jnp.zeros((batch,), jnp.int32), zeros, jnp.zeros((batch,), bool))


def line_end(
  stop_rule: str,
  passed_B,
  point_Bx3,
  prev_eos_B,
  done_B,
  at_cap_B,
  first_step,
  track: PenTrack,
  phi_last_B=0.0,
  dx_scale=1.0,
  dx_shift=0.0,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, PenTrack]:
  """Where each line ends, at one sampling step: (valid: the point is kept, ends_now, stopped by the rule, eos, track).

  "paper" stops as soon as the window has passed the text; "lift" then finishes the stroke under way (none is when
  the previous point lifted the pen); "finish" finishes the stroke under way unless it is a stray one (begun after
  the window's peak on the last character, clear to the right of the ink: what `line_shape.ink_after_text` counts),
  lets the last word's late strokes be written (at most LATE_STROKES, each begun over the ink: t bars, i dots) and
  stops at the first stroke begun clear to the right of the ink. The pen is lifted on a line's last point. A point
  that would start a new stroke at the step the rule stops the line is where the pen was going after the text (a
  stray mark), not ink of the text: it is left out, and the line ends at the previous point, which already lifts the
  pen. `point_Bx3` is normalised and `dx_scale * dx + dx_shift` its raw x offset (the writer's statistics), in which
  the track is kept; `phi_last_B` is this step's φ on the text's last character.
  """
  pen_up = prev_eos_B > 0.5
  point_eos = point_Bx3[:, 2]
  x_B = track.x_B + point_Bx3[:, 0] * dx_scale + dx_shift
  clear = x_B > track.right_B  # where a new stroke begins: right of all the ink so far
  if stop_rule == "lift":
    stop = passed_B & ((point_eos > 0.5) | pen_up)
  elif stop_rule == "finish":
    stop = passed_B & jnp.where(pen_up, clear | (track.late_B >= LATE_STROKES), track.stray_B)
  else:
    stop = passed_B
  stopped = ~done_B & stop
  ends_now = ~done_B & (stop | at_cap_B)
  stray = stopped & pen_up & ~first_step
  valid = ~done_B & ~stray
  starts = valid & pen_up
  track = PenTrack(
    jnp.where(valid, x_B, track.x_B),
    jnp.where(valid, jnp.maximum(track.right_B, x_B), track.right_B),
    track.late_B + (starts & passed_B & ~first_step).astype(jnp.int32),
    jnp.maximum(track.peak_B, phi_last_B),
    jnp.where(starts, (phi_last_B < track.peak_B) & clear, track.stray_B),
  )
  return valid, ends_now, stopped, jnp.where(ends_now, 1.0, point_eos), track


RESAMPLE_MODES = ("spline", "none")  # config.sample.resample (display_lines)


@functools.partial(jax.jit, static_argnames=("graphdef", "num_steps", "conditional", "stop_rule"))
def _sample_scan(
  graphdef: nnx.GraphDef,
  params: nnx.State,
  keys_B,
  bias_B,
  prime_Px3,
  chars_BxU,
  char_mask_BxU,
  text_lengths_B,
  caps_B,
  dx_scale,
  dx_shift,
  *,
  num_steps: int,
  conditional: bool,
  stop_rule: str = "paper",
):
  """The compiled sampler: priming (when `prime_Px3` is not None), then one scan of `num_steps` steps."""
  model = nnx.merge(graphdef, params)
  batch = keys_B.shape[0]
  if prime_Px3 is None:
    state0 = model.initial_state(batch)
    x0_Bx3 = jnp.broadcast_to(jnp.asarray(START_POINT, jnp.float32), (batch, 3))
  else:
    state0, x0_Bx3 = prime_state(model, prime_Px3, chars_BxU, char_mask_BxU, batch)
  onehot = model.one_hot(chars_BxU) if conditional else None
  num_positions = chars_BxU.shape[1] + 1

  def body(carry, t):
    state, x_prev, done, passed, track = carry
    state, y_hat, aux = model.step(state, x_prev, onehot, char_mask_BxU)
    params_t = mdn.mixture_params(y_hat, bias_B)
    step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys_B)
    point = jax.vmap(mdn.sample)(step_keys, params_t)
    if conditional:
      phi_BxV = _end_phi(aux, num_positions)
      passed = passed | window_finished(phi_BxV, text_lengths_B)
      last = jnp.maximum(text_lengths_B - 1, 0)[:, None]
      phi_last = jnp.take_along_axis(phi_BxV, last, axis=-1)[:, 0]
    else:
      phi_last = jnp.zeros((batch,), jnp.float32)
    valid, ends_now, stopped, eos, track = line_end(
      stop_rule, passed, point, x_prev[:, 2], done, t + 1 >= caps_B, t == 0, track, phi_last, dx_scale, dx_shift
    )
    point = point.at[:, 2].set(eos)
    out_point = jnp.where(valid[:, None], point, 0.0)
    outputs = {"point": out_point, "valid": valid, "stop": stopped, "mixture": params_t}
    if conditional:
      outputs["phi"] = jnp.where(valid[:, None], aux["phi"], 0.0)
      outputs["kappa"] = aux["kappa"]
    return (state, point, done | ends_now, passed, track), outputs

  done0 = jnp.zeros((batch,), bool)
  carry0 = (state0, x0_Bx3, done0, done0, start_track(batch))
  _, out = jax.lax.scan(body, carry0, jnp.arange(num_steps))
  return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), out)


def check_prime(prime: Prime) -> np.ndarray:
  """The prime's strokes as float32 [T, 3]; SamplingError for a wrong shape, no points or non-finite values."""
  strokes = np.asarray(prime.strokes_Tx3, np.float32)
  if strokes.ndim != 2 or strokes.shape[1] != 3 or strokes.shape[0] < 1:
    raise SamplingError(f"a prime needs strokes of shape [T >= 1, 3], got {strokes.shape}")
  if not np.all(np.isfinite(strokes)):
    raise SamplingError("the prime's strokes hold NaN or infinite values")
  if not prime.text:
    raise SamplingError("a prime needs the text of its line")
  return strokes


def prime_state(
  model: networks.Network, prime_strokes_Tx3: jax.Array, chars_BxU=None, char_mask_BxU=None, batch: int = 1
) -> tuple[networks.NetworkState, jax.Array]:
  """Teacher forcing over a prime line (pure, jittable): (state after it, next input = its last point) per line.

  The inputs are `(0, 0, 1), prime[0], ..., prime[T-2]`; the last prime point is the first input of sampling, so
  sampling continues exactly as if the network had written the prime itself.
  """
  strokes = jnp.asarray(prime_strokes_Tx3, jnp.float32)
  inputs = jnp.concatenate([jnp.asarray([START_POINT], jnp.float32), strokes[:-1]], axis=0)
  _, state, _ = model(jnp.broadcast_to(inputs, (batch,) + inputs.shape), chars_BxU, char_mask_BxU)
  return state, jnp.broadcast_to(strokes[-1], (batch, 3))


def conditioning_texts(texts: Sequence[str], prime: Prime | None, alphabet: Alphabet) -> list[str]:
  """What the window reads: the text, or `prime text + " " + text` when primed (space only if in the alphabet)."""
  if prime is None:
    return list(texts)
  sep = " " if " " in alphabet.chars and not prime.text.endswith(" ") else ""
  return [prime.text + sep + t for t in texts]


def encode_texts(
  texts: Sequence[str], alphabet: Alphabet, on_unknown: str = "error"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(chars [B, U] int32 padded with 0, char_mask [B, U] f32, lengths [B]); see Alphabet.encode for on_unknown."""
  ids, _ = alphabet.encode_all(list(texts), on_unknown=on_unknown)
  lengths = np.array([len(x) for x in ids], np.int32)
  u = int(lengths.max())
  chars = np.zeros((len(ids), u), np.int32)
  for b, x in enumerate(ids):
    chars[b, : len(x)] = x
  return chars, (chars != 0).astype(np.float32), lengths


def check_texts(texts: Sequence[str], alphabet: Alphabet) -> None:
  """Raise SamplingError for no text or an empty text, and `alphabet.check_known`'s UnknownCharactersError."""
  if not texts:
    raise SamplingError("no text to write")
  empty = [i for i, t in enumerate(texts) if not t.strip()]
  if empty:
    raise SamplingError(f"text {empty[0]} is empty: give at least one character to write")
  marked = [i for i, t in enumerate(texts) if end_of_text.END_CHAR in t]
  if marked:
    raise SamplingError(f"text {marked[0]} holds the end-of-text control character {end_of_text.END_CHAR!r}")
  alphabet.check_known(texts)


def _per_line_bias(bias, batch: int) -> np.ndarray:
  bias_B = np.broadcast_to(np.asarray(bias, np.float32), (batch,)).copy()
  if np.any(bias_B < 0) or not np.all(np.isfinite(bias_B)):
    raise SamplingError(f"the sampling bias must be finite and >= 0, got {bias_B.tolist()}")
  return bias_B


def sample(
  model: networks.Network,
  key: jax.Array,
  *,
  texts: Sequence[str] | None = None,
  alphabet: Alphabet | None = None,
  num_lines: int | None = None,
  bias=0.0,
  prime: Prime | None = None,
  max_steps_per_char: float = 40.0,
  max_steps: int = 1000,
  num_steps: int | None = None,
  stats=None,
  stop_rule: str = "paper",
  num_chars: int | None = None,
) -> Samples:
  """Sample lines from `model` in one compiled call.

  Synthesis: give `texts` and `alphabet`; line b stops by the window rule or after `max_steps_per_char *
  len(texts[b])` points. Prediction: give `num_lines`; every line has `max_steps` points. `bias` is a number or one
  per line. `prime` (synthesis) imitates a real line. `num_steps` fixes the scan length (default: the largest cap),
  e.g. to reuse one compiled sampler for several requests. `stats` (a NormStats) de-normalises `Samples.lines`.
  `stop_rule` (config.sample.stop_rule): "paper" ends a line at the first step the window rule holds; "lift" ends
  it at the first pen lift from then on, so the stroke under way (often the last letter) is finished; "finish" also
  lets the last word's late strokes (t bars, i dots) be written and leaves out strokes begun clear to the right of
  the ink after the window has read the last character (`line_end`).
  `key` is one key (split into one per line) or one key per line (shape [B]): line b's draws depend only on its
  key. `num_chars` pads the text axis to at least that many characters, so that batches of other texts reuse one
  compiled sampler.
  """
  check_choice(stop_rule, STOP_RULES, "the stop rule")
  conditional = isinstance(model, networks.SynthesisNetwork)
  if conditional:
    if texts is None or alphabet is None:
      raise SamplingError("the synthesis network writes text: give texts and alphabet")
    check_texts(texts, alphabet)
    full_texts = conditioning_texts(texts, prime, alphabet)
    # Characters of a prime's transcription outside the alphabet map to the unknown id, as in training; the new
    # texts were checked above. A writer trained with the end symbol reads it after the text (at position U+1, where
    # the stop rule looks), and the lengths stay those of the text.
    read = [end_of_text.conditioned(t, alphabet) for t in full_texts]
    chars, char_mask, _ = encode_texts(read, alphabet, "error" if prime is None else "map")
    lengths = np.array([len(t) for t in full_texts], np.int32)
    if num_chars is not None and num_chars > chars.shape[1]:
      pad = ((0, 0), (0, num_chars - chars.shape[1]))
      chars, char_mask = np.pad(chars, pad), np.pad(char_mask, pad)
    batch = len(texts)
    caps = np.array([max(1, math.ceil(max_steps_per_char * len(t))) for t in texts], np.int32)
  else:
    if texts is not None or prime is not None:
      raise SamplingError("the prediction network writes unconditionally: give num_lines, not texts or a prime")
    if not num_lines or num_lines < 1:
      raise SamplingError(f"num_lines must be >= 1, got {num_lines}")
    batch, full_texts = num_lines, [""] * num_lines
    chars, char_mask, lengths = (
      np.zeros((batch, 1), np.int32),
      np.zeros((batch, 1), np.float32),
      np.zeros((batch,), np.int32),
    )
    caps = np.full((batch,), int(max_steps), np.int32)
  steps = int(caps.max()) if num_steps is None else int(num_steps)
  if steps < 1:
    raise SamplingError(f"num_steps must be >= 1, got {steps}")
  prime_Px3 = None if prime is None else jnp.asarray(check_prime(prime))
  graphdef, params = nnx.split(model)
  if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) or key.shape not in ((), (batch,)):
    raise SamplingError(f"key must be one typed key (jax.random.key) or {batch} of them, got {key.dtype} {key.shape}")
  keys = key if key.shape == (batch,) else jax.random.split(key, batch)
  out = _sample_scan(
    graphdef,
    params,
    keys,
    jnp.asarray(_per_line_bias(bias, batch)),
    prime_Px3,
    jnp.asarray(chars),
    jnp.asarray(char_mask),
    jnp.asarray(lengths),
    jnp.asarray(caps),
    jnp.float32(1.0 if stats is None else stats.std[0]),
    jnp.float32(0.0 if stats is None else stats.mean[0]),
    num_steps=steps,
    conditional=conditional,
    stop_rule=stop_rule,
  )
  out = jax.device_get(out)
  mask = np.asarray(out["valid"])
  lens = mask.sum(axis=1).astype(np.int32)
  strokes = np.asarray(out["point"], np.float32)
  lines = [strokes[b, : lens[b]] for b in range(batch)]
  if stats is not None:
    lines = [np.asarray(stats.denormalise(x), np.float32) for x in lines]
  return Samples(
    strokes_BxTx3=strokes,
    mask_BxT=mask.astype(np.float32),
    lengths_B=lens,
    finished_B=np.asarray(out["stop"]).any(axis=1),
    lines=lines,
    texts=full_texts,
    mixture=mdn.MixtureParams(*[np.asarray(a) for a in out["mixture"]]),
    phi_BxTxU=np.asarray(out["phi"]) if conditional else None,
    kappa_BxTxK=np.asarray(out["kappa"]) if conditional else None,
  )


def prime_lead_steps(phi_BxTxU: np.ndarray, lengths_B: np.ndarray, prefix_len: int) -> np.ndarray:
  """Leading steps of each primed line drawn before the window first reads the new text (argmax_u φ(t, u) >=
  prefix_len) [B]: strokes that finish the prime (i dots and t bars of its last word) and ink drawn while the
  window is still on the space after the prime (a lead-in stroke that joins the prime's hand to the first letter);
  the first letter starts where the window first reads it, mid-stroke if need be. Measured on 60 lines primed with
  20 held-out IAM-OnDB hands, cutting there rather than at the start of the stroke under way misread 30 first
  letters instead of 36 (tesseract), CER 30.3% vs 30.6%. Lines whose window never reaches the new text are kept
  whole (0)."""
  lead = np.zeros(len(lengths_B), np.int32)
  for b, n in enumerate(lengths_B):
    reading = np.argmax(phi_BxTxU[b, :n], axis=-1) >= prefix_len
    if reading.any():
      lead[b] = int(np.argmax(reading))
  return lead


def drop_leading_steps(samples: Samples, lead_B: np.ndarray, stats=None) -> Samples:
  """`samples` with the first `lead_B[b]` steps of line b removed from every per-step array (shifted left)."""

  def shift(a):
    if a is None:
      return None
    out = np.zeros_like(a)
    for b, k in enumerate(lead_B):
      out[b, : a.shape[1] - k] = a[b, k:]
    return out

  strokes = shift(samples.strokes_BxTx3)
  lengths = (samples.lengths_B - lead_B).astype(np.int32)
  lines = [strokes[b, : lengths[b]] for b in range(len(lengths))]
  if stats is not None:
    lines = [np.asarray(stats.denormalise(x), np.float32) for x in lines]
  return dataclasses.replace(
    samples,
    strokes_BxTx3=strokes,
    mask_BxT=shift(samples.mask_BxT),
    lengths_B=lengths,
    lines=lines,
    mixture=mdn.MixtureParams(*[shift(a) for a in samples.mixture]),
    phi_BxTxU=shift(samples.phi_BxTxU),
    kappa_BxTxK=shift(samples.kappa_BxTxK),
  )


def check_choice(value: str, choices: Sequence[str], name: str, error: type[UserError] = SamplingError) -> str:
  """`value` when it is one of `choices`, else `error` naming `name` (a flag or config field): the one check of the
  stop rule and the resampling mode, wherever they come from (each caller's own error class)."""
  if value not in choices:
    raise error(f"{name} must be one of {tuple(choices)}, got {value!r}")
  return value


def display_lines(lines: Sequence[np.ndarray], config) -> list[np.ndarray]:
  """De-normalised lines as a writer draws and returns them: with `config.sample.resample == "spline"` and
  `config.data.downsample` = k > 1, every stroke is spline-upsampled k times (`strokes.upsample_line`), back to the
  point rate of the raw data; otherwise the lines as written. The network's own rate stays in `Samples.lines`
  (plots aligned with φ and the mixture, styles that prime it)."""
  factor = int(config.data.downsample)
  check_choice(config.sample.resample, RESAMPLE_MODES, "config.sample.resample")
  if config.sample.resample == "none" or factor <= 1:
    return list(lines)
  return [strokes_lib.upsample_line(line, factor) for line in lines]
