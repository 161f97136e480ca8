"""Compressed embedding variants: quantization, row pruning, distillation, and their measurement."""
