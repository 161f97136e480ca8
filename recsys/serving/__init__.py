"""Serving: trained models exported unsharded, the scorer interface every variant implements, the
one byte counter of embedding tables, and the serving path every variant scores requests through
(`requests.RequestBatch`, `lookup.Lookup` over the variant's TBEs, `fast.serving_path`)."""
