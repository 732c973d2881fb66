"""dms-agent: an event-driven sidecar for docker-mailserver on Kubernetes."""

__version__ = "0.1.0"
