"""Known node-test failures: elementwise (test name -> reason).

Cases whose element types numpy lacks (bfloat16, float8, int4...) are
marked by the harness itself (tests/conformance/cases.py: dtype_gap)."""

KNOWN_FAILURES: dict[str, str] = {}
