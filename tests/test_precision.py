"""Matmul precision: "auto" picks bf16 only where the chip has it, and bf16 matmuls compute the fp32 network."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_model import tiny_model_cfg

from handwriting_jax.config import defaults, validation
from handwriting_jax.model import networks, precision

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 fma
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu sse2
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd bf16 sve
CPU implementer\t: 0x41
"""


@pytest.mark.parametrize(
  "text, expected",
  [
    (X86_CPUINFO, {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "fma"}),
    (ARM_CPUINFO, {"fp", "asimd", "bf16", "sve"}),
  ],
)
def test_cpu_flags_reads_the_first_cpus_flags_on_x86_and_arm(tmp_path, text, expected):
  path = tmp_path / "cpuinfo"
  path.write_text(text)
  assert precision.cpu_flags(str(path)) == expected


def test_cpu_flags_of_a_missing_file_is_empty(tmp_path):
  assert precision.cpu_flags(str(tmp_path / "absent")) == frozenset()


@pytest.mark.parametrize(
  "name, platform, flags, expected",
  [
    ("auto", "cpu", {"avx2", "avx512f", "avx512_bf16"}, "bfloat16"),
    ("auto", "cpu", {"avx2", "amx_bf16"}, "bfloat16"),
    ("auto", "cpu", {"asimd", "bf16"}, "bfloat16"),
    ("auto", "cpu", {"avx2", "avx512f", "fma"}, "float32"),
    ("auto", "cpu", set(), "float32"),
    ("auto", "gpu", set(), "bfloat16"),
    ("auto", "tpu", set(), "bfloat16"),
    ("float32", "gpu", set(), "float32"),
    ("bfloat16", "cpu", {"avx2"}, "bfloat16"),
  ],
)
def test_auto_is_bf16_exactly_where_the_chip_multiplies_it(name, platform, flags, expected):
  resolved, reason = precision.resolve(name, platform, frozenset(flags))
  assert resolved == expected
  assert reason  # printed at the start of training
  if name == "auto" and platform == "cpu" and expected == "bfloat16":
    assert any(flag in reason for flag in flags & precision.BF16_CPU_FLAGS)


def test_auto_on_this_host_follows_its_backend_and_cpu():
  resolved, _ = precision.resolve_here("auto")
  native = jax.default_backend() != "cpu" or bool(precision.cpu_flags() & precision.BF16_CPU_FLAGS)
  assert resolved == ("bfloat16" if native else "float32")
  net = networks.build_network(tiny_model_cfg("synthesis", compute_dtype="auto"), 9, 0)
  assert net.compute_dtype == (jnp.bfloat16 if native else None)


@pytest.mark.parametrize("value", ["auto", "bfloat16", "float32"])
def test_compute_dtype_values_pass_validation(value):
  cfg = defaults.apply_variant(defaults.base_config("synthesis"), "small")
  cfg.model.compute_dtype = value
  validation.validate(cfg)


def test_unknown_compute_dtype_is_a_config_error_naming_the_field():
  cfg = defaults.apply_variant(defaults.base_config("synthesis"), "small")
  cfg.model.compute_dtype = "bf16"
  with pytest.raises(validation.ConfigError, match=r"^config\.model\.compute_dtype:.*auto"):
    validation.validate(cfg)


@pytest.mark.parametrize("mode", ["prediction", "synthesis"])
def test_bf16_matmuls_compute_the_fp32_network_to_bf16_precision(mode):
  """Same weights, matmul inputs rounded to bf16 (8 mantissa bits), fp32 accumulation: outputs and gradients agree
  with fp32 to within 1% (bf16 rounding is 0.4%), and differ (so the bf16 path ran)."""
  rng = np.random.default_rng(0)
  b, t, u = 2, 9, 5
  inputs = jnp.asarray(rng.normal(size=(b, t, 3)), jnp.float32)
  chars = jnp.asarray(rng.integers(1, 9, size=(b, u)), jnp.int32)
  char_mask = jnp.ones((b, u), jnp.float32)
  outs = {}
  for dtype in ("float32", "bfloat16"):
    net = networks.build_network(tiny_model_cfg(mode, compute_dtype=dtype), 9, 0)
    graphdef, params = nnx.split(net, nnx.Param)

    def outputs(p, graphdef=graphdef):
      return nnx.merge(graphdef, p)(inputs, chars, char_mask)[0]

    y = jax.jit(outputs)(params)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=y.shape), jnp.float32)
    grads = jax.jit(jax.grad(lambda p, f=outputs, w=weights: jnp.sum(w * f(p))))(params)
    outs[dtype] = y, jax.flatten_util.ravel_pytree(grads)[0]
  (y32, g32), (y16, g16) = outs["float32"], outs["bfloat16"]
  assert not np.array_equal(y16, y32)
  assert np.linalg.norm(y16 - y32) <= 0.01 * np.linalg.norm(y32)
  assert np.linalg.norm(g16 - g32) <= 0.01 * np.linalg.norm(g32)
