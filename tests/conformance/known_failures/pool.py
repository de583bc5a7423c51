"""Known node-test failures: pool (test name -> reason)."""

KNOWN_FAILURES: dict[str, str] = {}
