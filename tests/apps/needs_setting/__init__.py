"""A package whose helper module reads an environment variable that is not set."""
