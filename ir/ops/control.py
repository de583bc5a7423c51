"""Op definitions: control."""
