"""Op definitions: pool."""
