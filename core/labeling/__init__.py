"""Cluster labels: offline class-based TF-IDF keywords (ctfidf), the text a document offers
(texts), the labeling options of a cluster (options), and the OpenAI-compatible LLM labeller (llm)."""
