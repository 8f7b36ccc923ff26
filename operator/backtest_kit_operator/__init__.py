"""Kubernetes operator (kopf) for LiveTrader and Walker resources."""
