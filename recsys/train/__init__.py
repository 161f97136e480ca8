"""Training with sharded embeddings: process groups, sharding plans, the loop, checkpoints."""
