"""A static web site that writes in the browser, no server: `python -m handwriting_jax.export_web --out=site/`.

  python -m handwriting_jax.export_web --out=site/ [--workdir=DIR | --shipped=NAME] [--ort_dir=DIR]
  python -m http.server -d site/ 8000        # then open http://localhost:8000/ (any static host serves it)

The network runs in the page (onnxruntime-web, WebAssembly); the site holds everything it loads, so it works
offline once fetched. onnxruntime-web is copied from its npm package at export time (`--ort_dir`, or fetched once
with npm and cached). See docs/writing.md, "In the browser".
"""

from absl import flags

from handwriting_jax import cli
from handwriting_jax.serving import web_export
from handwriting_jax.writing import writer as writer_lib

cli.define_writer_flags(writer_lib.SHIPPED, writer_lib.DEFAULT_SHIPPED)
_OUT = flags.DEFINE_string("out", None, "Folder to write the site into (new, empty, or an earlier site).")
_ORT_DIR = flags.DEFINE_string(
  "ort_dir", None, f"An extracted onnxruntime-web {web_export.ORT_WEB_VERSION} npm package (default: fetched with npm)."
)
_WEIGHTS = flags.DEFINE_enum(
  "weight_dtype",
  "float16",
  list(web_export.WEIGHT_DTYPES),
  "How model.onnx stores the weights: float16 halves the download (the arithmetic stays float32).",
)
flags.mark_flags_as_required(["out"])


def main(argv) -> None:
  """Load the writer, build the site, print its files and size."""
  del argv
  with cli.one_line_errors(OSError):
    web_export.check_out_dir(_OUT.value)
    writer = writer_lib.load_writer(writer_lib.resolve_workdir(flags.FLAGS.workdir, flags.FLAGS.shipped))
    summary = web_export.build_site(writer, _OUT.value, _ORT_DIR.value, _WEIGHTS.value)
  for name, size in summary.sizes.items():
    print(f"  {name:<40} {size / 1e6:7.2f} MB")
  size = summary.total_bytes / 1e6
  print(f"wrote {summary.out_dir}: {size:.1f} MB; serve it with python -m http.server -d {summary.out_dir}")


if __name__ == "__main__":
  cli.run(main)
