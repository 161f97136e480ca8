"""Evaluation metrics: CTR (`recsys.metrics.ctr`) and full-catalogue retrieval (`recsys.metrics.retrieval`)."""
