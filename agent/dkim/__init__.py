"""dkim capability."""
