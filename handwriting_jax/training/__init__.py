"""Training: the loop, the jitted step, optimisers, weight noise, data parallelism, checkpoints, samples while it
trains."""
