"""Data: ink (strokes, InkML/SVG, drawing to SVG/PNG), text (alphabet, word pieces), IAM-OnDB, the embedded corpus,
batches."""
