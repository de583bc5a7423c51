"""Known node-test failures: nn (test name -> reason)."""

KNOWN_FAILURES: dict[str, str] = {}
