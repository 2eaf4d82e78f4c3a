"""Does a wavefront over the layers pay on this machine? A probe on bare LSTM stacks, before building it for real.

  python experiments/wavefront_probe.py --hidden=128,192,400     # B=32, T=267: a few minutes on 2 cores

Two schedules of the same 3-layer LSTM stack (each layer fed the layer below and a fixed window-sized input, as in
the synthesis network; the project's peephole cell, no output layer), forward and `jax.grad` by plain autodiff:
  layers  one `lax.scan` of T steps per layer, one [B, R] x [R, 4H] matmul per step (the project's schedule);
  wave    one `lax.scan` of T + 2 iterations, iteration i running layer 1 at step i, layer 2 at i - 1 and layer 3 at
          i - 2: three matmuls per iteration with no dependence between them, a third as many iterations.
Both are timed alternately in one process (median of --repeats) and their outputs checked equal. The wavefront
removes per-iteration overhead and lets independent matmuls overlap; it costs the hoisting of the layer-below
projections (here neither schedule hoists, so the probe isolates the iteration count).
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from handwriting_jax.model import lstm


def _cell(z_Bx4H, c_BxH):
  """The project's peephole LSTM cell (`model.lstm.lstm_cell`, fixed peepholes): (h, c) from z and c_{t-1}."""
  h, c = lstm.lstm_cell(jnp.full((3, c_BxH.shape[-1]), 0.1), lstm.LSTMCarry(c_BxH, c_BxH), z_Bx4H)  # reads only c
  return h, c


def by_layers(ws, zx_TxBx4H, win_BxA):
  """Sum of all hidden states, one scan per layer."""
  _t_len, b, g = zx_TxBx4H.shape
  below, total = None, 0.0
  for n, w in enumerate(ws):

    def body(carry, inp, n=n, w=w):
      h, c = carry
      zx, under = inp
      r = jnp.concatenate([h, win_BxA] if n == 0 else [h, under, win_BxA], -1)
      h, c = _cell(zx + r @ w, c)
      return (h, c), h

    zeros = jnp.zeros((b, g // 4))
    under = zx_TxBx4H[..., : g // 4] if below is None else below
    _, below = jax.lax.scan(body, (zeros, zeros), (zx_TxBx4H, under))
    total = total + below.sum()
  return total


def wavefront(ws, zx_TxBx4H, win_BxA):
  """Sum of all hidden states, one scan of T + L - 1 iterations over all layers."""
  t_len, b, g = zx_TxBx4H.shape
  layers = len(ws)
  pad = lambda k: jnp.zeros((k, b, g))
  zxs = tuple(jnp.concatenate([pad(n), zx_TxBx4H, pad(layers - 1 - n)], 0) for n in range(layers))  # layer n: t - n

  def body(states, inp):
    i, zx_i = inp
    new = []
    for n, (w, (h, c)) in enumerate(zip(ws, states)):
      zx_n = zx_i[n]
      r = jnp.concatenate([h, win_BxA] if n == 0 else [h, states[n - 1][0], win_BxA], -1)
      hn, cn = _cell(zx_n + r @ w, c)
      active = (i >= n) & (i < t_len + n)
      new.append((jnp.where(active, hn, h), jnp.where(active, cn, c)))
    return tuple(new), tuple(h for h, _ in new)

  zeros = jnp.zeros((b, g // 4))
  _, hs = jax.lax.scan(body, ((zeros, zeros),) * layers, (jnp.arange(t_len + layers - 1), zxs))
  return sum(h[n : n + t_len].sum() for n, h in enumerate(hs))


def probe(hidden: int, batch: int, length: int, alphabet: int, repeats: int) -> dict:
  """Median forward and gradient times of both schedules at one size (ms), alternated; checks they agree."""
  keys = jax.random.split(jax.random.key(0), 5)
  ws = [
    jax.random.normal(keys[n], ((hidden + alphabet) if n == 0 else (2 * hidden + alphabet), 4 * hidden)) * 0.05
    for n in range(3)
  ]
  zx = jax.random.normal(keys[3], (length, batch, 4 * hidden))
  win = jax.random.normal(keys[4], (batch, alphabet)) * 0.1
  fns = {"layers": by_layers, "wave": wavefront}
  fwd = {k: jax.jit(f) for k, f in fns.items()}
  grad = {k: jax.jit(jax.grad(f)) for k, f in fns.items()}
  np.testing.assert_allclose(fwd["layers"](ws, zx, win), fwd["wave"](ws, zx, win), rtol=1e-4)
  for a, b in zip(grad["layers"](ws, zx, win), grad["wave"](ws, zx, win)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
  times = {f"{p}_{k}": [] for p in ("fwd", "grad") for k in fns}
  for _ in range(repeats):
    for k in fns:
      for p, table in (("fwd", fwd), ("grad", grad)):
        t0 = time.perf_counter()
        jax.block_until_ready(table[k](ws, zx, win))
        times[f"{p}_{k}"].append(time.perf_counter() - t0)
  out = {k: 1000 * float(np.median(v)) for k, v in times.items()}
  out.update(
    hidden=hidden, fwd_speedup=out["fwd_layers"] / out["fwd_wave"], grad_speedup=out["grad_layers"] / out["grad_wave"]
  )
  return out


def main() -> None:
  """Probe every --hidden and print one line each."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--hidden", default="128,192,400", help="LSTM sizes to probe (comma-separated)")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--length", type=int, default=267)
  p.add_argument("--alphabet", type=int, default=80, help="width of the window input fed to every layer")
  p.add_argument("--repeats", type=int, default=7)
  a = p.parse_args()
  for h in (int(x) for x in a.hidden.split(",")):
    r = probe(h, a.batch, a.length, a.alphabet, a.repeats)
    print(
      f"H={h:4d} B={a.batch} T={a.length}: forward {r['fwd_layers']:7.1f} ms by layers, {r['fwd_wave']:7.1f} ms "
      f"wavefront ({r['fwd_speedup']:.2f}x); gradient {r['grad_layers']:7.1f} / {r['grad_wave']:7.1f} ms "
      f"({r['grad_speedup']:.2f}x)",
      flush=True,
    )


if __name__ == "__main__":
  main()
