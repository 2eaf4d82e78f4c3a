"""Optimisers: Graves' centred RMSProp with momentum (eqs. 38-41) or Adam, a schedule, and gradient clipping."""

import ml_collections
import optax

from handwriting_jax.config.defaults import OPTIMIZERS, SCHEDULES


def learning_rate_schedule(optim_cfg: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """Constant or cosine learning rate, with an optional linear warm-up."""
  lr = optim_cfg.learning_rate
  warmup = optim_cfg.warmup_steps
  if optim_cfg.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif optim_cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(num_steps - warmup, 1), alpha=optim_cfg.final_fraction)
  else:
    raise ValueError(f"unknown learning-rate schedule {optim_cfg.schedule!r}; expected one of {SCHEDULES}")
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(optim_cfg: ml_collections.ConfigDict, num_steps: int) -> optax.GradientTransformation:
  """The optimiser `optim_cfg.name` names, preceded by global-norm clipping when `clip_mode == "global_norm"`.

  Graves' RMSProp: n = ℵn + (1-ℵ)ε², g = ℵg + (1-ℵ)ε, Δ = ℶΔ - ℷ ε / sqrt(n - g² + ℸ), which is optax's centred
  rmsprop with `eps_in_sqrt=True` and momentum. The `graves` clip mode acts inside the network's backprop.
  """
  lr = learning_rate_schedule(optim_cfg, num_steps)
  if optim_cfg.name == "rmsprop":
    opt = optax.rmsprop(
      lr, decay=optim_cfg.decay, eps=optim_cfg.eps, eps_in_sqrt=True, centered=True, momentum=optim_cfg.momentum
    )
  elif optim_cfg.name == "adam":
    opt = optax.adam(lr, b1=optim_cfg.b1, b2=optim_cfg.b2)
  else:
    raise ValueError(f"unknown optimiser {optim_cfg.name!r}; expected one of {OPTIMIZERS}")
  if optim_cfg.clip_mode == "global_norm":
    return optax.chain(optax.clip_by_global_norm(optim_cfg.max_grad_norm), opt)
  return opt
