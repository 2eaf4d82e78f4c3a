"""The measuring parts of `experiments/` scripts that the README's performance figures rest on."""

import io
import json
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image


def test_step_profile_reads_every_matmul_kernel_of_a_compiled_program(experiment):
  """`step_profile.dot_kernels` finds each matmul of an optimised HLO module with its operand shapes and dimension
  numbers (plain, transposed and batched), and `dot_runner` re-runs exactly that matmul alone."""
  step_profile = experiment("step_profile")
  rng = np.random.default_rng(0)
  a, b = rng.standard_normal((32, 64), np.float32), rng.standard_normal((64, 96), np.float32)
  c = rng.standard_normal((96, 24), np.float32)
  p, q = rng.standard_normal((8, 5, 7), np.float32), rng.standard_normal((8, 7, 3), np.float32)

  def program(a, b, c, p, q):
    h = jnp.tanh(a @ b)
    return h @ c, h.T @ a, jnp.einsum("bij,bjk->bik", p, q)

  hlo = jax.jit(program).lower(a, b, c, p, q).compile().as_text()
  kernels = step_profile.dot_kernels(hlo)
  operands = {(lhs, rhs) for lhs, rhs, _ in kernels.values()}
  assert {((32, 64), (64, 96)), ((32, 96), (96, 24)), ((8, 5, 7), (8, 7, 3))} <= operands
  assert any((lhs == (32, 96) and rhs == (32, 64)) or (lhs == (32, 64) and rhs == (32, 96)) for lhs, rhs in operands)
  assert len(kernels) == 4  # the four matmuls, and nothing else (tanh, transposes) taken for one

  arrays = {(32, 64): a, (64, 96): b, (96, 24): c, (8, 5, 7): p, (8, 7, 3): q}
  for lhs, rhs, dims in kernels.values():
    if lhs in arrays and rhs in arrays:  # the dimension numbers read back reproduce the program's own product
      dn = ((dims[1], dims[3]), (dims[0], dims[2]))
      got = jax.lax.dot_general(arrays[lhs], arrays[rhs], dn)
      want = {((32, 64), (64, 96)): a @ b, ((8, 5, 7), (8, 7, 3)): p @ q}.get((lhs, rhs))
      if want is not None:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    for calls, chained in ((3, True), (3, False)):
      seconds = step_profile.dot_runner(lhs, rhs, dims, calls, chained)()
      assert 0 < seconds < 60


def test_fuzzed_style_files_and_api_bodies_give_a_result_or_a_user_error(experiment, tmp_path):
  """A short run of experiments/fuzz_inputs.py (the long one is run by hand), and the inputs it found."""
  fuzz = experiment("fuzz_inputs")
  assert fuzz.fuzz_target("style", seconds=0, chunk=150) >= 100  # hypothesis may skip repeated inputs
  assert fuzz.fuzz_target("api", seconds=0, chunk=150) >= 100
  folder = str(tmp_path)
  fuzz.check_style_file(folder, ".inkml", b'<?xml version="" encoding="A"?>', None)  # was a LookupError
  npz = bytearray(fuzz.style_seeds()[".npz"])
  at = npz.index(b"PK\x01\x02") + 6  # the central directory's "version needed to extract"
  npz[at : at + 2] = b"\x40\x00"  # 6.4, which zipfile does not implement
  with pytest.raises(NotImplementedError):
    zipfile.ZipFile(io.BytesIO(bytes(npz)))
  fuzz.check_style_file(folder, ".npz", bytes(npz), None)  # was a NotImplementedError


def test_first_legible_is_the_minute_from_which_cer_stays_under_the_target(experiment):
  t2l = experiment("time_to_legible")
  minutes = [5.0, 10.0, 15.0, 20.0, 25.0]
  assert t2l.first_legible(minutes, [0.9, 0.14, 0.2, 0.15, 0.1], 0.15) == 20.0  # dipped at 10, back over at 15
  assert t2l.first_legible(minutes, [0.1] * 5, 0.15) == 5.0
  assert t2l.first_legible(minutes, [0.1, 0.1, 0.1, 0.1, 0.3], 0.15) is None  # the last checkpoint is not legible
  assert t2l.first_legible([], [], 0.15) is None


def test_time_to_legible_judges_every_checkpoint_of_a_run_by_its_minute(experiment, tmp_path, capsys):
  """End to end on the tiny config: a run with two checkpoints, each judged (CER and NLL), never legible."""
  t2l = experiment("time_to_legible")
  workdir, out, plot = str(tmp_path / "run"), str(tmp_path / "t2l.json"), str(tmp_path / "curve.png")
  t2l.main(
    [
      f"--workdir={workdir}",
      "--seeds=1",
      f"--out={out}",
      f"--plot={plot}",
      "--",
      "--config=configs/synthesis.py:tiny",
      "--config.train.num_steps=4",
      "--config.train.checkpoint_every=2",
      "--config.train.sample_every=0",
      "--config.sample.max_steps_per_char=3",
      "--config.data.alphabet= abcdefghijklmnopqrstuvwxyzI",  # what the everyday sentences need
    ]
  )
  with open(out, encoding="utf-8") as f:
    result = json.load(f)
  rows = result["rows"]
  assert [r["step"] for r in rows] == [2, 4] and 0 < rows[0]["minutes"] <= rows[1]["minutes"]
  assert all(r["cer"] >= 0 and r["nll"] is not None for r in rows)
  assert result["legible_from_minute"] is None and "never" in capsys.readouterr().out
  with Image.open(plot) as image:  # the curve, a picture a person can look at
    assert image.format == "PNG" and image.size[0] > image.size[1] > 200
