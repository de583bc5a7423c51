"""The API misuse tests' fixtures (tests/helpers/api_misuse.py), shared by
test_api_misuse.py and test_api_interrupts.py; a module's own fixture of the
same name (test_fwdnxt.py's ``ie``, for one) takes precedence in it."""
from tests.helpers.api_misuse import binaries, expected, ie  # noqa: F401 - fixtures, found by name
