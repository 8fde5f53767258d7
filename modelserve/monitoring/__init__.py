"""Monitoring: reference profiles, drift and outlier detection on live traffic, explanations."""
