"""kp.ApiKPException: every kp misuse or failure, with its documented code."""
from __future__ import annotations

from runtime.errors import TesseraError
from runtime.kp.enums import ApiReturnCode


class ApiKPException(TesseraError):
    """``ApiKPException(api_return_code, function_name, result=None)``:
    ``api_return_code`` is a kp.ApiReturnCode; ``detail`` (Tessera's) says
    what is at fault. A TesseraError, as every error Tessera raises on
    purpose (docs/reliability.md), and still an Exception, as kp's is."""

    def __init__(self, api_return_code, function_name: str, result=None, *, detail: str = ""):
        self.api_return_code = ApiReturnCode(api_return_code)
        self.function_name = function_name
        self.result = result
        self.detail = detail
        text = f"Error: {function_name} failed, error = {self.api_return_code.name} ({int(self.api_return_code)})"
        super().__init__(f"{text}: {detail}" if detail else text)


def fail(code: ApiReturnCode, function: str, detail: str) -> ApiKPException:
    """The exception for ``function`` failing with ``code`` because of ``detail``."""
    return ApiKPException(code, f"kp.{function}", detail=detail)
