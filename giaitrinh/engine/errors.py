"""Errors a use case can end with; the web layer maps each to its HTTP status."""
from __future__ import annotations


class ServiceError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, fields: dict[str, str] | None = None, **extra):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.extra = extra


class ValidationFailed(ServiceError):
    code = "validation_error"
    status = 422


class Unauthenticated(ServiceError):
    code = "unauthenticated"
    status = 401


class Forbidden(ServiceError):
    code = "forbidden"
    status = 403


class NotFound(ServiceError):
    code = "not_found"
    status = 404


class Conflict(ServiceError):
    code = "conflict"
    status = 409


class RateLimited(ServiceError):
    code = "rate_limited"
    status = 429
