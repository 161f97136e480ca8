"""The application layer: the CLI and the end-to-end pipeline, the only place that wires
recsys, compression, simulator and bandit together. Heavy modules are imported lazily."""
