"""lb capability."""
