"""Where the desired mail state comes from: mounted folders/files and the Kubernetes API."""
