"""Known node-test failures: shape (test name -> reason)."""

KNOWN_FAILURES: dict[str, str] = {}
