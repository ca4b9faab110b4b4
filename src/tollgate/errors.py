"""The one exception tree of Tollgate; front doors render these in the client's wire format.

    TollgateError                         status  type / code
    ├── InvalidRequestError                  400  invalid_request_error
    │   └── UnsupportedParameterError        400  invalid_request_error / unsupported_parameter
    ├── AuthenticationError                  401  invalid_request_error / invalid_api_key
    ├── PermissionDeniedError                403  permission_error
    ├── NotFoundError                        404  invalid_request_error / not_found
    │   └── ModelNotFoundError               404  invalid_request_error / model_not_found
    ├── BudgetExceededError                  402  insufficient_quota / budget_exceeded (or 403 if configured)
    ├── PayloadTooLargeError                 413  invalid_request_error / request_too_large
    ├── RateLimitError                       429  rate_limit_error (carries Retry-After)
    ├── UpstreamError                        502  upstream_error (something went wrong at the provider)
    │   ├── ProviderBadRequestError          400  invalid_request_error (the provider rejected the request)
    │   ├── ProviderAuthError                502  upstream_error / provider_auth_error
    │   ├── ProviderRateLimitError           429  rate_limit_error (carries the provider's Retry-After)
    │   ├── ProviderUnavailableError         502  upstream_error / provider_unavailable (5xx, connection)
    │   ├── ProviderTimeoutError             504  timeout_error / provider_timeout
    │   └── ProviderProtocolError            502  upstream_error / bad_upstream_response
    ├── ServiceUnavailableError              503  api_error / service_unavailable (a store the gateway needs is down)
    └── InternalError                        500  api_error

Every error knows its HTTP status, its OpenAI error ``type`` and ``code``; messages are written
for the caller and never contain credentials. Provider errors also carry whether a retry on
another deployment may help (``retryable``), for the routing layer.
"""

from __future__ import annotations


class TollgateError(Exception):
    """Base of every error a client can see."""

    status: int = 500
    type: str = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = headers or {}


class InvalidRequestError(TollgateError):
    status = 400
    type = "invalid_request_error"


class UnsupportedParameterError(InvalidRequestError):
    code = "unsupported_parameter"


class AuthenticationError(TollgateError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDeniedError(TollgateError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFoundError(TollgateError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class BudgetExceededError(TollgateError):
    """A USD budget of the caller (key, user, team or org) cannot take the request's cost.

    402 Payment Required by default (``budgets.exceed_status`` may make it 403): the caller is known and
    allowed, but out of money, which clients must not retry blindly like a 429. The type is OpenAI's own
    ``insufficient_quota`` (what its SDKs and tools already recognise as "out of credit"); Anthropic clients
    see ``billing_error``."""

    status = 402
    type = "insufficient_quota"
    code = "budget_exceeded"


class PayloadTooLargeError(TollgateError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimitError(TollgateError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(TollgateError):
    """The provider failed; ``retryable`` says whether another attempt may succeed."""

    status = 502
    type = "upstream_error"
    code: str | None = "upstream_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        upstream_status: int | None = None,
        retry_after: float | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, headers=headers)
        self.provider = provider
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers.setdefault("retry-after", str(max(0, round(retry_after))))


class ProviderBadRequestError(UpstreamError):
    status = 400
    type = "invalid_request_error"
    code: str | None = None


class ProviderAuthError(UpstreamError):
    code = "provider_auth_error"


class ProviderRateLimitError(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    retryable = True


class ProviderUnavailableError(UpstreamError):
    code = "provider_unavailable"
    retryable = True


class ProviderTimeoutError(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "provider_timeout"
    retryable = True


class ProviderProtocolError(UpstreamError):
    code = "bad_upstream_response"
    retryable = True


class ServiceUnavailableError(TollgateError):
    """A store the gateway needs to decide is unreachable and the configuration says to fail closed."""

    status = 503
    type = "api_error"
    code = "service_unavailable"


class InternalError(TollgateError):
    status = 500
    type = "api_error"
    code = "internal_error"
