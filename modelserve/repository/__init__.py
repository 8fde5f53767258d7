"""Repository: discovery and persistence. It announces what should be served; it never loads."""
