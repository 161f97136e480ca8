"""Serving: trained models exported unsharded, the scorer interface every variant implements, and the
one byte counter of embedding tables."""
