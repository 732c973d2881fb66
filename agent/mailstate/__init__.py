"""The declared mail state: model, parsing, validation, merging."""
