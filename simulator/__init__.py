"""Click simulator: a ground-truth world that real model variants serve, with latency-aware users."""
