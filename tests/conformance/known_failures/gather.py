"""Known node-test failures: gather (test name -> reason)."""

KNOWN_FAILURES: dict[str, str] = {}
