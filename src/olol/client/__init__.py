"""Clients of an OLOL agent's gRPC API."""
