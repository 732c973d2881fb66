"""dns capability."""
