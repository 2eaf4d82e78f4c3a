"""A PyTorch peer of Graves' (2013) prediction and synthesis networks, for timing beside the project (never a
dependency: `pip install torch==2.13.0` to use it).

It is written the fastest way PyTorch allows on a CPU: the synthesis network's first layer and its attention
window step in a Python loop of `nn.LSTMCell` (the window feeds the next step), its layers 2..N and every layer
of the prediction network run as whole-sequence `nn.LSTM` (one fused MKL/cuDNN kernel per layer). Skip
connections as in the paper: each layer sees the input (and the window), each above the first the layer below,
and the output layer all hidden layers. Training step = forward, mixture-density loss, backward, gradient-norm
clipping, Adam update. It does slightly less work than the project: no peephole connections (`nn.LSTM` has none).

  python experiments/torch_peer.py --mode=synthesis --batch=32 --length=600   # s/step of one training step
"""

import argparse
import math
import time

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812  (the PyTorch convention)


class SynthesisPeer(nn.Module):
  """Layer 1 + Gaussian window stepped, layers 2..N as `nn.LSTM`, a mixture-density output over all layers."""

  def __init__(self, hidden: int, layers: int, mixtures: int, gaussians: int, alphabet: int):
    super().__init__()
    self.hidden, self.gaussians, self.alphabet = hidden, gaussians, alphabet
    self.cell1 = nn.LSTMCell(3 + alphabet, hidden)
    self.window = nn.Linear(hidden, 3 * gaussians)
    self.upper = nn.ModuleList([nn.LSTM(3 + alphabet + hidden, hidden, batch_first=True) for _ in range(layers - 1)])
    self.head = nn.Linear(hidden * layers, 6 * mixtures + 1)

  def forward(self, x_BxTx3, onehot_BxUxA, char_mask_BxU):
    """Output-layer activations [B, T, 6M+1]."""
    b, t_len, _ = x_BxTx3.shape
    h = c = x_BxTx3.new_zeros(b, self.hidden)
    w = x_BxTx3.new_zeros(b, self.alphabet)
    kappa = x_BxTx3.new_zeros(b, self.gaussians)
    u = torch.arange(onehot_BxUxA.shape[1], dtype=x_BxTx3.dtype, device=x_BxTx3.device)
    hs, ws = [], []
    for t in range(t_len):
      h, c = self.cell1(torch.cat([x_BxTx3[:, t], w], -1), (h, c))
      alpha, beta, dk = torch.exp(self.window(h)).chunk(3, -1)
      kappa = kappa + dk
      phi = (alpha[..., None] * torch.exp(-beta[..., None] * (kappa[..., None] - u) ** 2)).sum(1) * char_mask_BxU
      w = torch.einsum("bu,bua->ba", phi, onehot_BxUxA)
      hs.append(h)
      ws.append(w)
    below, w_seq = torch.stack(hs, 1), torch.stack(ws, 1)
    outs = [below]
    for rnn in self.upper:
      below, _ = rnn(torch.cat([x_BxTx3, w_seq, below], -1))
      outs.append(below)
    return self.head(torch.cat(outs, -1))


class PredictionPeer(nn.Module):
  """N whole-sequence `nn.LSTM` layers with skip connections, a mixture-density output over all layers."""

  def __init__(self, hidden: int, layers: int, mixtures: int):
    super().__init__()
    self.rnns = nn.ModuleList([nn.LSTM(3 + (hidden if n else 0), hidden, batch_first=True) for n in range(layers)])
    self.head = nn.Linear(hidden * layers, 6 * mixtures + 1)

  def forward(self, x_BxTx3, *unused):
    """Output-layer activations [B, T, 6M+1]."""
    outs, below = [], None
    for rnn in self.rnns:
      below, _ = rnn(x_BxTx3 if below is None else torch.cat([x_BxTx3, below], -1))
      outs.append(below)
    return self.head(torch.cat(outs, -1))


def mdn_nll(out_BxTxY, targets_BxTx3, mask_BxT, mixtures: int):
  """Graves' eq. 26 negative log-likelihood, summed over time, mean over the batch (nats per sequence)."""
  pi, mu1, mu2, s1, s2, rho, end = torch.split(out_BxTxY, [mixtures] * 6 + [1], -1)
  log_pi, s1, s2, rho = F.log_softmax(pi, -1), torch.exp(s1), torch.exp(s2), torch.tanh(rho)
  z1 = (targets_BxTx3[..., :1] - mu1) / s1
  z2 = (targets_BxTx3[..., 1:2] - mu2) / s2
  one_m = 1 - rho**2
  log_n = (
    -math.log(2 * math.pi)
    - torch.log(s1)
    - torch.log(s2)
    - 0.5 * torch.log(one_m)
    - (z1**2 + z2**2 - 2 * rho * z1 * z2) / (2 * one_m)
  )
  log_p = torch.logsumexp(log_pi + log_n, -1) - F.binary_cross_entropy_with_logits(
    end[..., 0], targets_BxTx3[..., 2], reduction="none"
  )
  return -(log_p * mask_BxT).sum() / mask_BxT.shape[0]


def make_train_step(
  mode: str,
  batch: int,
  length: int,
  chars: int,
  hidden: int,
  layers: int = 3,
  mixtures: int = 20,
  gaussians: int = 10,
  alphabet: int = 59,
  amp: bool = False,
  device: str = "cpu",
  seed: int = 0,
):
  """A closure running one training step of the peer on fixed random data; returns its loss (a float)."""
  torch.manual_seed(seed)
  dev = torch.device(device)
  if mode == "synthesis":
    net = SynthesisPeer(hidden, layers, mixtures, gaussians, alphabet)
  elif mode == "prediction":
    net = PredictionPeer(hidden, layers, mixtures)
  else:
    raise ValueError(f"mode must be 'prediction' or 'synthesis', not {mode!r}")
  net = net.to(dev)
  opt = torch.optim.Adam(net.parameters(), 1e-4)
  strokes = torch.randn(batch, length + 1, 3)
  strokes[..., 2] = (torch.rand(batch, length + 1) < 0.05).float()
  onehot = F.one_hot(torch.randint(2, alphabet, (batch, chars)), alphabet).float()
  char_mask, mask = torch.ones(batch, chars), torch.ones(batch, length)
  strokes, onehot, char_mask, mask = (a.to(dev) for a in (strokes, onehot, char_mask, mask))
  sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

  def train_step() -> float:
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
      out = net(strokes[:, :-1], onehot, char_mask)
    loss = mdn_nll(out.float(), strokes[:, 1:], mask, mixtures)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), 10.0)
    opt.step()
    sync()
    return float(loss.detach())

  return train_step


def main() -> None:
  """Time a few training steps of the peer and print the median."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--mode", default="synthesis")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--length", type=int, default=600)
  p.add_argument("--chars", type=int, default=40)
  p.add_argument("--hidden", type=int, default=400)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--device", default="cpu")
  p.add_argument("--amp", action="store_true", help="bf16 autocast of the forward pass (fp32 weights)")
  a = p.parse_args()
  step = make_train_step(a.mode, a.batch, a.length, a.chars, a.hidden, amp=a.amp, device=a.device)
  step()
  times = []
  for _ in range(a.repeats):
    t0 = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - t0)
  med = sorted(times)[len(times) // 2]
  print(
    f"torch {a.mode} {a.device}{' bf16' if a.amp else ''} B={a.batch} T={a.length} H={a.hidden}: "
    f"{med:.3f} s/step, loss {loss:.1f}"
  )


if __name__ == "__main__":
  main()
