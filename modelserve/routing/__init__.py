"""Routing: which model answers a request. Inference graphs, A/B splits, bandits, canaries, shadows."""
