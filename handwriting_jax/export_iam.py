"""Write IAM-OnDB as one compressed splits file, to carry it where the tarballs do not fit (a GPU machine's upload).

  python -m handwriting_jax.export_iam --iam_path=/data/iam-ondb --out=iam-splits.npz

The file holds Graves' two splits raw (IAM units, y up, before any preprocessing) and the reader's counts, as a
compressed `.npz` without pickle. Train from it with `--config.data.iam_path=iam-splits.npz`: every preprocessing
field applies as with the folder. It is IAM-OnDB data: never commit it, share it only under its terms.
"""

import os

from absl import flags

from handwriting_jax import cli
from handwriting_jax.data import iam

_IAM_PATH = flags.DEFINE_string("iam_path", None, "Folder holding the IAM-OnDB tarballs (or folders) and split lists.")
_OUT = flags.DEFINE_string("out", None, "The splits file to write (.npz).")
_STRICT = flags.DEFINE_bool("strict", False, "A malformed file is an error instead of a warning.")
flags.mark_flags_as_required(["iam_path", "out"])


def main(argv) -> None:
  """Read the folder, write the file, print what it holds."""
  del argv
  with cli.one_line_errors(OSError):
    if not _OUT.value.endswith(".npz"):
      cli.fail(f"--out={_OUT.value!r}: the splits file must end in .npz")
    if os.path.isdir(_OUT.value):
      cli.fail(f"--out={_OUT.value!r} is a folder; give a file name ending in .npz")
    corpus = iam.read_iam(_IAM_PATH.value, strict=_STRICT.value)
    iam.write_splits_file(corpus, _OUT.value)
  print(
    f"wrote {_OUT.value}: {len(corpus.train.lines)} training and {len(corpus.valid.lines)} validation lines, "
    f"{os.path.getsize(_OUT.value) / 1e6:.1f} MB"
  )


if __name__ == "__main__":
  cli.run(main)
