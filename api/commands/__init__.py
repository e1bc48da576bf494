"""The client commands of `clusterd` (ingest, clusters, execute, runs, export): each talks to a
running server over the public HTTP API through api/client.py."""
