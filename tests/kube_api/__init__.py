"""The Kubernetes test API server (see server.py) and its pytest fixtures (fixtures.py)."""
