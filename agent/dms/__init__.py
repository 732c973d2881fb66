"""docker-mailserver specifics: its files, its setup command, reading its actual state."""
