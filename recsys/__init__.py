"""TorchRec DLRM and two-tower models: data, training with sharded embeddings, metrics, serving.

Importing this package is cheap; torch and torchrec load only in the submodules that need them.
"""
