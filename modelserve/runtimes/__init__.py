"""Runtimes: one ML library each, behind ``load`` / ``predict`` / ``unload``."""
