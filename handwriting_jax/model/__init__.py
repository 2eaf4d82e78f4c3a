"""Graves (2013) networks: pure recurrent cores (LSTM, window, MDN) and the Flax NNX modules holding them."""
