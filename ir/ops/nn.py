"""Op definitions: nn."""
