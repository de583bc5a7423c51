"""Known node-test failures: elementwise (test name -> reason)."""

KNOWN_FAILURES: dict[str, str] = {}
