#!/usr/bin/env bash
# Train on one machine: one process drives every visible GPU (data parallel over all local devices).
#
#   launch/single_node.sh CONFIG WORKDIR [more flags for handwriting_jax.main]
#   launch/single_node.sh configs/synthesis.py:paper runs/synthesis --config.model.compute_dtype=bfloat16
#   CUDA_VISIBLE_DEVICES=0,1 launch/single_node.sh configs/synthesis.py:paper runs/synthesis_2gpu
#
# CUDA_VISIBLE_DEVICES (optional) picks the GPUs; config.data.batch_size is the global batch and must divide by
# their number. PYTHON picks the interpreter (default: python on PATH, e.g. the active virtual environment).
# Running the same command again with the same WORKDIR resumes from its newest checkpoint.

set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG WORKDIR [flags for handwriting_jax.main]" >&2
  exit 2
fi
config=$1
workdir=$2
shift 2
python=${PYTHON:-python}

# One process, even inside a multi-task SLURM allocation or with cluster variables left in the environment.
export JAX_NUM_PROCESSES=1
unset JAX_COORDINATOR_ADDRESS JAX_PROCESS_ID
export PYTHONUNBUFFERED=1

echo "GPUs: ${CUDA_VISIBLE_DEVICES:-all visible}; workdir ${workdir}" >&2
exec "${python}" -m handwriting_jax.main --config="${config}" --workdir="${workdir}" "$@"
