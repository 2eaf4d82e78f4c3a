"""How the LSTM cell's element-wise work is written changes its speed on XLA's CPU backend.

  python experiments/cell_probe.py                 # H=128 (iam_small) and H=400 (paper), B=32, T=267
  python experiments/cell_probe.py --hidden=128 --rounds=8

XLA fuses the gates of one time step into a loop kernel. Written the textbook way (σ of z_i, σ of z_f, tanh of z_c:
three transcendentals over three slices of z), that kernel ran about ten times slower than the same arithmetic as one
sigmoid over the contiguous [B, 3H] slab [z_i, z_f, 2 z_c] (tanh(x) = 2σ(2x) - 1), which is how
`model/lstm.py:lstm_cell` writes it now. This probe times one recurrent layer (`recurrent.layer_scan`, the fast
path with its hand-written backward) with both cells, forward and forward + backward, alternated round by round in
one process, and checks that both give the same values and gradients. Only the ratios mean anything on a shared
machine.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from handwriting_jax.model import lstm, recurrent
from handwriting_jax.model.clipping import maybe_clip


def textbook_cell(peep_3xH, carry: lstm.LSTMCarry, z_Bx4H, clip=None) -> lstm.LSTMCarry:
  """Eqs. 7-11 as the paper writes them: one transcendental per gate slice."""
  z_i, z_f, z_c, z_o = jnp.split(z_Bx4H, 4, axis=-1)
  i = jax.nn.sigmoid(maybe_clip(z_i + peep_3xH[0] * carry.c, clip))
  f = jax.nn.sigmoid(maybe_clip(z_f + peep_3xH[1] * carry.c, clip))
  c = f * carry.c + i * jnp.tanh(maybe_clip(z_c, clip))
  o = jax.nn.sigmoid(maybe_clip(z_o + peep_3xH[2] * c, clip))
  return lstm.LSTMCarry(o * jnp.tanh(c), c)


def layer_fns(cell_fn, hidden: int, batch: int, length: int, inputs: int = 100):
  """(jitted loss, jitted gradient, weights, xs) of one peephole LSTM layer with output projection."""
  ks = jax.random.split(jax.random.key(0), 5)
  weights = recurrent.LayerWeights(
    0.1 * jax.random.normal(ks[0], (inputs, 4 * hidden)),
    jnp.zeros(4 * hidden),
    0.1 * jax.random.normal(ks[1], (hidden, 4 * hidden)),
    0.1 * jax.random.normal(ks[2], (3, hidden)),
    0.1 * jax.random.normal(ks[3], (hidden, 121)),
  )
  xs = jax.random.normal(ks[4], (length, batch, inputs))
  step = lambda peep, consts, carry, z: (cell_fn(peep, carry, z, 10.0), None)
  cell = recurrent.Cell(lambda h: h, step, lambda h: h, lambda carry: carry.h)
  carry0 = lstm.zero_carry(batch, hidden)

  def loss(weights, xs):
    h, _, y, _ = recurrent.layer_scan(cell, weights, carry0, [xs])
    return jnp.sum(jnp.sin(y)) + jnp.sum(h * h)

  return jax.jit(loss), jax.jit(jax.grad(loss, argnums=(0, 1))), weights, xs


def main(argv=None) -> None:
  """Time both cells on one layer at each hidden size, alternated, after checking they agree."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--hidden", default="128,400", help="hidden sizes, comma-separated")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--length", type=int, default=267)
  p.add_argument("--rounds", type=int, default=5)
  args = p.parse_args(argv)
  cells = {"textbook": textbook_cell, "slab (lstm_cell)": lstm.lstm_cell}
  for hidden in map(int, args.hidden.split(",")):
    fns = {name: layer_fns(fn, hidden, args.batch, args.length) for name, fn in cells.items()}
    outs = {name: (f(w, x), g(w, x)) for name, (f, g, w, x) in fns.items()}
    (l0, g0), (l1, g1) = outs.values()
    diff = max(
      float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-12))
      for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1))
    )
    print(f"H={hidden}: loss {float(l0):.4f} vs {float(l1):.4f}, largest relative gradient difference {diff:.1e}")
    times = {(name, kind): [] for name in fns for kind in ("forward", "forward+backward")}
    for _ in range(args.rounds):
      for name, (f, g, w, x) in fns.items():
        for kind, fn in (("forward", f), ("forward+backward", g)):
          t0 = time.perf_counter()
          jax.block_until_ready(fn(w, x))
          times[name, kind].append(time.perf_counter() - t0)
    for kind in ("forward", "forward+backward"):
      base = np.array(times["textbook", kind])
      new = np.array(times["slab (lstm_cell)", kind])
      print(
        f"  {kind:17s} textbook {1e6 * np.median(base) / args.length:7.1f} us/step, slab "
        f"{1e6 * np.median(new) / args.length:7.1f} us/step, speed-up per round {np.round(base / new, 2)}"
      )


if __name__ == "__main__":
  main()
