"""kube capability."""
