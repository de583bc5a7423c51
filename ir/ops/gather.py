"""Op definitions: gather."""
