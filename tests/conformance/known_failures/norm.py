"""Known node-test failures: norm (test name -> reason)."""

KNOWN_FAILURES: dict[str, str] = {}
