"""Ranking and retrieval models whose embeddings live in TorchRec EmbeddingBagCollections."""
