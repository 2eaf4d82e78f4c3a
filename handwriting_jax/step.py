"""Pure training and evaluation steps over an explicit state (Flax NNX functional style: split once, merge inside)."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from handwriting_jax.model import mdn


class TrainState(NamedTuple):
  """Everything a train step updates: step counter, network parameters (nnx.State), optimiser state."""
  step: jax.Array
  params: nnx.State
  opt_state: Any


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation) -> tuple[nnx.GraphDef, TrainState]:
  """Split the model into its static graph and parameter state and initialise the optimiser."""
  graphdef, params = nnx.split(model, nnx.Param)
  return graphdef, TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))


def batch_loss(graphdef: nnx.GraphDef, params: nnx.State, batch: dict) -> tuple[jax.Array, jax.Array]:
  """(nats per sequence, nats per step) of the network on a teacher-forced batch."""
  model = nnx.merge(graphdef, params)
  y_hat_TxBxY, _, _ = model(batch["inputs"], batch.get("chars"), batch.get("char_mask"), time_major=True)
  targets_TxBx3, mask_TxB = jnp.swapaxes(batch["targets"], 0, 1), jnp.swapaxes(batch["mask"], 0, 1)
  return mdn.sequence_loss(y_hat_TxBxY, targets_TxBx3, mask_TxB, time_major=True)


def loss_and_grads(graphdef: nnx.GraphDef, params: nnx.State, batch: dict):
  """Loss (nats per sequence, the paper's objective), per-step loss and parameter gradients."""
  grad_fn = jax.value_and_grad(lambda p: batch_loss(graphdef, p, batch), has_aux=True)
  (loss, per_step), grads = grad_fn(params)
  return loss, per_step, grads


def apply_gradients(tx: optax.GradientTransformation, state: TrainState, grads, loss, per_step
                    ) -> tuple[TrainState, dict]:
  """Optimiser update; metrics hold the losses, the gradient norm and whether all of them are finite."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  grad_norm = optax.tree.norm(grads)
  metrics = {"loss": loss, "loss_per_step": per_step, "grad_norm": grad_norm,
             "finite": jnp.isfinite(loss) & jnp.isfinite(grad_norm)}
  return TrainState(state.step + 1, params, opt_state), metrics


def train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, state: TrainState, batch: dict
               ) -> tuple[TrainState, dict]:
  """One optimisation step on a (global) batch; pure, so it can be jitted with shardings or pmapped."""
  loss, per_step, grads = loss_and_grads(graphdef, state.params, batch)
  return apply_gradients(tx, state, grads, loss, per_step)


def eval_sums(graphdef: nnx.GraphDef, params: nnx.State, batch: dict) -> dict:
  """Summed NLL, number of lines and number of real steps of a batch (for exact validation averages)."""
  per_sequence, _ = batch_loss(graphdef, params, batch)
  lines = jnp.asarray(batch["inputs"].shape[0], jnp.float32)
  return {"nll": per_sequence * lines, "lines": lines, "steps": jnp.sum(batch["mask"])}
