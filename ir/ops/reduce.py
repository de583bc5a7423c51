"""Op definitions: reduce."""
