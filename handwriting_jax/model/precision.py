"""Matmul precision (`model.compute_dtype`): "auto" runs bf16 matmuls where the hardware has bf16 instructions.

bf16 matmul inputs with fp32 accumulation train like fp32 (docs/performance.md) and run faster only where the chip
multiplies bf16 natively: GPUs, TPUs, and CPUs with AVX512_BF16 or AMX-BF16 (x86) or BF16 (Arm). Elsewhere a CPU
emulates them, slower than fp32, so "auto" keeps fp32 there. The choice is made on the host that runs the network
and is printed with the reason.
"""

import functools

import jax
import jax.numpy as jnp

DTYPES = ("float32", "bfloat16", "float16", "auto")
# /proc/cpuinfo feature flags of native bf16 arithmetic: x86 (AVX512_BF16, AMX-BF16) and Arm (FEAT_BF16).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(cpuinfo_path: str = "/proc/cpuinfo") -> frozenset[str]:
  """The feature flags the kernel lists for the first CPU ("flags" on x86, "Features" on Arm); empty if unreadable."""
  try:
    with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
      for line in f:
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
          return frozenset(value.split())
  except OSError:
    pass
  return frozenset()


def resolve(name: str, platform: str, flags: frozenset[str]) -> tuple[str, str]:
  """(dtype name, reason): `name` itself unless "auto", which is bfloat16 on an accelerator or a CPU with `flags`
  holding a native bf16 flag, float32 otherwise."""
  if name != "auto":
    return name, "set in the config"
  if platform != "cpu":
    return "bfloat16", f"auto: {platform} multiplies bf16 natively"
  native = sorted(flags & BF16_CPU_FLAGS)
  if native:
    return "bfloat16", f"auto: the CPU has {', '.join(native)}"
  return "float32", "auto: the CPU has no bf16 instructions (they would be emulated, slower than fp32)"


@functools.cache
def resolve_here(name: str) -> tuple[str, str]:
  """`resolve` for this process's default JAX backend and CPU."""
  return resolve(name, jax.default_backend(), cpu_flags())


def compute_dtype(name: str):
  """The matmul input dtype `lstm.matmul` takes for config value `name`: None for float32 (plain matmuls)."""
  resolved, _ = resolve_here(name)
  return None if resolved == "float32" else jnp.dtype(resolved)
