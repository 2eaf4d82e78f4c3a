"""Graves (2013) networks: pure recurrent cores (LSTM, window, MDN), the Flax NNX modules holding them, the
sampler."""
