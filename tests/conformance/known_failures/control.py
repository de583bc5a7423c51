"""Known node-test failures: control (test name -> reason)."""

KNOWN_FAILURES: dict[str, str] = {}
