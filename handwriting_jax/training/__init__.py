"""Training: the loop, the jitted step, optimisers, weight noise, data parallelism, checkpoints, samples as it trains."""
