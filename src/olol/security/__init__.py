"""Cluster security: the shared token, signatures, TLS material."""
