"""Leaves shared by every layer for logs (and later traces): no layer logic here."""
