"""Datasets that yield TorchRec `Batch`es: synthetic click logs, MovieLens-100k, Criteo TSV."""
