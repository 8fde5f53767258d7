"""Core: how one model version answers. Format-agnostic and transport-agnostic."""
