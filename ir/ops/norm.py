"""Op definitions: norm."""
