"""Precomputed predictions: score a table of keys and features, store the outputs by key in a SQL
table (``modelserve precompute``), and keep them fresh (on a schedule or on promotion)."""
