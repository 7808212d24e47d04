"""Todo tasks and their tags."""
