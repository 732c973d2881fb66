"""docker-mailserver specifics: its files, its setup command, reading its actual state."""

# DMS's own config folder: a fixed path in DMS's image and the default mount of every compose
# file and manifest. It is not a temp file the agent creates, so bandit's B108 does not apply.
DMS_CONFIG_DIR = "/tmp/docker-mailserver"  # nosec B108
