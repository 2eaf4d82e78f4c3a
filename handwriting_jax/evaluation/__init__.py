"""Evaluation: validation NLL, legibility read back by OCR, style fidelity and its hand encoder."""
