"""Evaluation metrics: CTR metrics (`recsys.metrics.ctr`) and full-catalogue retrieval metrics (`recsys.metrics.retrieval`)."""
