"""Kubernetes: publish values to Secrets, rollout restart workloads, wait (lightkube, imported lazily)."""
