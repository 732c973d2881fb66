"""checks capability."""
