"""Density-based algorithms: dbscan, hdbscan (the hdbscan package), optics, mean_shift."""
