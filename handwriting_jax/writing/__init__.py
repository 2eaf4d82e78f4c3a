"""Writing: the writer library (load a trained network, write lines and pages, styles) and adaptation to a hand."""
