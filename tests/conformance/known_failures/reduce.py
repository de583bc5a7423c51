"""Known node-test failures: reduce (test name -> reason)."""

KNOWN_FAILURES: dict[str, str] = {}
