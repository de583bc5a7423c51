"""Known node-test failures: quant (test name -> reason)."""

KNOWN_FAILURES: dict[str, str] = {}
