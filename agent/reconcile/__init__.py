"""Reconcile: desired state -> plan -> apply through DMS's own `setup`, with a ledger of intents."""
