"""Known node-test failures: resize (test name -> reason)."""

KNOWN_FAILURES: dict[str, str] = {}
