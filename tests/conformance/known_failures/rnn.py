"""Known node-test failures: rnn (test name -> reason)."""

KNOWN_FAILURES: dict[str, str] = {}
