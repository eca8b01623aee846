"""Every error the gateway answers with, and its HTTP status.

Bodies share one shape: ``{"error": {"code", "message", "field"?}}``. Messages name
the field, what was wrong with its value and what was expected; they never carry a
stack trace or an internal address.
"""


class GatewayError(Exception):
    status = 500
    code = "internal_error"
    retry_after: int | None = None
    # whether this failure counts towards opening the circuit to Triton
    breaks_circuit = False

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}

    def headers(self) -> dict:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(self.retry_after)}


class MalformedJson(GatewayError):
    status = 400
    code = "malformed_json"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"


class BodyTooLarge(GatewayError):
    status = 413
    code = "body_too_large"


class InvalidField(GatewayError):
    status = 422
    code = "invalid_field"


class UpstreamUnavailable(GatewayError):
    status = 503
    code = "model_unavailable"
    retry_after = 1
    breaks_circuit = True


class Overloaded(GatewayError):
    status = 503
    code = "overloaded"
    retry_after = 1


class UpstreamTimeout(GatewayError):
    status = 504
    code = "model_timeout"
    breaks_circuit = True


class UpstreamFailed(GatewayError):
    status = 502
    code = "model_error"
