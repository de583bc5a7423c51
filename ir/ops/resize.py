"""Op definitions: resize."""
