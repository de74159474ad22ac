"""Configuration: the file's models, loading and validation."""
