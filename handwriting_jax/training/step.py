"""Pure training and evaluation steps over an explicit state (Flax NNX functional style: split once, merge inside)."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from handwriting_jax.model import mdn
from handwriting_jax.training import weight_noise


class TrainState(NamedTuple):
  """Everything a train step updates: step counter, network parameters (nnx.State; the means μ under weight
  noise), optimiser state, log σ of every weight under adaptive weight noise (else None), and the exponential
  moving average of the parameters under `train.ema_decay` > 0 (else None)."""

  step: jax.Array
  params: nnx.State
  opt_state: Any
  log_sigma: Any = None
  ema: Any = None


class Noise(NamedTuple):
  """The static weight-noise settings of a train step (`weight_noise.py`): mode, fixed or initial std, the seed
  its draws come from, and 1/N, the complexity cost's share per training sequence."""

  mode: str = "none"
  std: float = 0.0
  seed: int = 0
  inv_num_sequences: float = 0.0


NO_NOISE = Noise()


def noise_settings(config, num_train_sequences: int) -> Noise:
  """The `Noise` of a config (`optim.weight_noise`, `optim.weight_noise_std`, `seed`) for N training sequences."""
  return Noise(
    config.optim.weight_noise,
    float(config.optim.weight_noise_std),
    int(config.seed),
    1.0 / max(int(num_train_sequences), 1),
  )


def create_train_state(
  model: nnx.Module, tx: optax.GradientTransformation, noise: Noise = NO_NOISE, ema: bool = False
) -> tuple[nnx.GraphDef, TrainState]:
  """Split the model into its static graph and parameter state, add log σ under adaptive weight noise and the
  moving average (starting at the initial parameters) when `ema`, and initialise the optimiser over everything
  trained."""
  graphdef, params = nnx.split(model, nnx.Param)
  log_sigma = weight_noise.init_log_sigma(params, noise.std) if noise.mode == "adaptive" else None
  average = jax.tree.map(jnp.copy, params) if ema else None
  state = TrainState(jnp.zeros((), jnp.int32), params, None, log_sigma, average)
  return graphdef, state._replace(opt_state=tx.init(trained(state)))


def judged_params(state: TrainState) -> nnx.State:
  """The parameters a run is validated, sampled and written with: the moving average when it keeps one (it writes
  more steadily than the last step's weights), else the trained parameters."""
  return state.params if state.ema is None else state.ema


def ema_decay_at(decay: float, step: jax.Array) -> jax.Array:
  """The moving average's decay after optimiser step `step` (0-based): min(decay, (1 + step) / (10 + step)), so
  that the early average forgets the random initialisation quickly (the warm-up of TensorFlow's
  ExponentialMovingAverage with num_updates)."""
  t = step.astype(jnp.float32)
  return jnp.minimum(jnp.float32(decay), (1.0 + t) / (10.0 + t))


def update_ema(ema: nnx.State, params: nnx.State, decay: jax.Array) -> nnx.State:
  """ema ← decay · ema + (1 − decay) · params, leaf by leaf."""
  return jax.tree.map(lambda a, p: decay * a + (1.0 - decay) * p, ema, params)


def trained(state: TrainState):
  """What the optimiser updates: the parameters, with log σ beside them under adaptive weight noise."""
  return state.params if state.log_sigma is None else (state.params, state.log_sigma)


def batch_loss(graphdef: nnx.GraphDef, params: nnx.State, batch: dict) -> tuple[jax.Array, jax.Array]:
  """(nats per sequence, nats per step) of the network on a teacher-forced batch."""
  model = nnx.merge(graphdef, params)
  y_hat_TxBxY, _, _ = model(batch["inputs"], batch.get("chars"), batch.get("char_mask"), time_major=True)
  targets_TxBx3, mask_TxB = jnp.swapaxes(batch["targets"], 0, 1), jnp.swapaxes(batch["mask"], 0, 1)
  return mdn.sequence_loss(y_hat_TxBxY, targets_TxBx3, mask_TxB, time_major=True)


def objective(graphdef: nnx.GraphDef, noise: Noise, trained_tree, batch: dict, step: jax.Array, scale: float = 1.0):
  """`scale` × (the batch's mean NLL per sequence + L_C / N under adaptive noise), to differentiate with respect
  to `trained_tree` (`trained(state)`); aux: (NLL per sequence, NLL per step, L_C), the NLL under this batch's
  noisy weights. `scale` lets each of D devices carry 1/D of the global objective."""
  if noise.mode == "none":
    weights, complexity = trained_tree, jnp.zeros((), jnp.float32)
  elif noise.mode == "fixed":
    weights = weight_noise.noisy_weights(trained_tree, weight_noise.step_key(noise.seed, step), std=noise.std)
    complexity = jnp.zeros((), jnp.float32)
  else:
    params, log_sigma = trained_tree
    weights = weight_noise.noisy_weights(params, weight_noise.step_key(noise.seed, step), log_sigma=log_sigma)
    complexity = weight_noise.complexity_cost(params, log_sigma)
  per_sequence, per_step = batch_loss(graphdef, weights, batch)
  return scale * (per_sequence + complexity * noise.inv_num_sequences), (per_sequence, per_step, complexity)


def apply_gradients(
  tx: optax.GradientTransformation, state: TrainState, grads, loss, per_step, complexity=None, ema_decay: float = 0.0
) -> tuple[TrainState, dict]:
  """Optimiser update of `trained(state)`, then of the moving average when the state keeps one (`ema_decay`, as
  `ema_decay_at`); metrics hold the losses (the data term, and L_C under adaptive weight noise), the gradient norm
  and whether all of them are finite."""
  tree = trained(state)
  updates, opt_state = tx.update(grads, state.opt_state, tree)
  tree = optax.apply_updates(tree, updates)
  params, log_sigma = (tree, None) if state.log_sigma is None else tree
  grad_norm = optax.tree.norm(grads)
  metrics = {
    "loss": loss,
    "loss_per_step": per_step,
    "grad_norm": grad_norm,
    "finite": jnp.isfinite(loss) & jnp.isfinite(grad_norm),
  }
  if complexity is not None:
    metrics["complexity"] = complexity
  ema = None if state.ema is None else update_ema(state.ema, params, ema_decay_at(ema_decay, state.step))
  return TrainState(state.step + 1, params, opt_state, log_sigma, ema), metrics


def train_step(
  graphdef: nnx.GraphDef,
  tx: optax.GradientTransformation,
  state: TrainState,
  batch: dict,
  noise: Noise = NO_NOISE,
  ema_decay: float = 0.0,
) -> tuple[TrainState, dict]:
  """One optimisation step on a (global) batch; pure, so it can be jitted with shardings or pmapped."""
  grad_fn = jax.value_and_grad(lambda t: objective(graphdef, noise, t, batch, state.step), has_aux=True)
  (_, (loss, per_step, complexity)), grads = grad_fn(trained(state))
  return apply_gradients(tx, state, grads, loss, per_step, complexity if noise.mode == "adaptive" else None, ema_decay)


def eval_sums(graphdef: nnx.GraphDef, params: nnx.State, batch: dict) -> dict:
  """Summed NLL, number of lines and number of real steps of a batch (for exact validation averages)."""
  per_sequence, _ = batch_loss(graphdef, params, batch)
  lines = jnp.asarray(batch["inputs"].shape[0], jnp.float32)
  return {"nll": per_sequence * lines, "lines": lines, "steps": jnp.sum(batch["mask"])}
