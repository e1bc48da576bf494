"""Agglomerative (hierarchical) clustering."""
