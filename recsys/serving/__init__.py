"""Serving: trained models exported unsharded, and the scorer interface every variant implements."""
