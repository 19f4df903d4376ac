"""The one boundary where :mod:`accord.errors` meets gRPC's rich status (``grpcio-status``).

Server side, :func:`rpc_boundary` wraps a servicer method: an :class:`AccordError` becomes a status
with a standard detail message (``BadRequest``, ``ErrorInfo``, ``QuotaFailure``); anything else is
a bug, logged on the server and reported as ``INTERNAL`` with a constant message. Client side,
:func:`error_from_rpc` turns a ``grpc.RpcError`` back into the same exception tree.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from accord.errors import (
    AccordError,
    AnswerTimeExceeded,
    BudgetExhausted,
    DeadlineExceeded,
    Failure,
    IntegrityError,
    InternalError,
    InvalidQuery,
    NotFound,
    PartialFailure,
    PermissionDenied,
    ResourceLimit,
    Unauthenticated,
    Unavailable,
    Violation,
)

__all__ = [
    "DOMAIN",
    "INTERNAL_MESSAGE",
    "error_from_rpc",
    "rpc_boundary",
    "to_status",
]


log = logging.getLogger(__name__)

DOMAIN = "accord.v1"
INTERNAL_MESSAGE = "internal error in Accord; the server log has the details"

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


def _pack(detail: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


def to_status(err: Failure) -> grpc.Status:
    """The rich gRPC status for one of our errors."""
    details: list[any_pb2.Any] = []
    if isinstance(err, InvalidQuery):
        code = code_pb2.NOT_FOUND if isinstance(err, NotFound) else code_pb2.INVALID_ARGUMENT
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in err.violations
                    ]
                )
            )
        )
    elif isinstance(err, PermissionDenied):
        code = code_pb2.UNAUTHENTICATED if isinstance(err, Unauthenticated) else code_pb2.PERMISSION_DENIED
        details.append(
            _pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN, metadata=err.metadata))
        )
    elif isinstance(err, BudgetExhausted):
        code = code_pb2.RESOURCE_EXHAUSTED
        details.append(
            _pack(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(
                            subject=err.subject, description=f"remaining epsilon {err.remaining}"
                        )
                    ]
                )
            )
        )
        details.append(
            _pack(
                error_details_pb2.ErrorInfo(
                    reason="BUDGET_EXHAUSTED", domain=DOMAIN, metadata={"remaining": err.remaining}
                )
            )
        )
    elif isinstance(err, ResourceLimit):
        code = code_pb2.RESOURCE_EXHAUSTED
        details.append(_pack(error_details_pb2.ErrorInfo(reason="RESOURCE_LIMIT", domain=DOMAIN)))
        if err.retry_after_seconds is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(max(0, round(err.retry_after_seconds * 1e9)))
            details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    elif isinstance(err, IntegrityError):
        code = code_pb2.ABORTED
        details.append(_pack(error_details_pb2.ErrorInfo(reason="SHARES_INVALID", domain=DOMAIN)))
    elif isinstance(err, PartialFailure):
        code = code_pb2.UNAVAILABLE
        details.append(
            _pack(error_details_pb2.ErrorInfo(reason="NODES_MISSING", domain=DOMAIN, metadata=err.missing))
        )
    elif isinstance(err, Unavailable):
        code = code_pb2.UNAVAILABLE
    elif isinstance(err, AnswerTimeExceeded):
        code = code_pb2.DEADLINE_EXCEEDED
        details.append(
            _pack(
                error_details_pb2.ErrorInfo(
                    reason=AnswerTimeExceeded.reason, domain=DOMAIN, metadata={"setting": err.setting}
                )
            )
        )
    elif isinstance(err, DeadlineExceeded):
        code = code_pb2.DEADLINE_EXCEEDED
    else:
        code = code_pb2.INTERNAL
    message = err.message if code != code_pb2.INTERNAL else INTERNAL_MESSAGE
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=details))


def rpc_boundary(
    method: Callable[[Any, _Req, grpc.ServicerContext], _Resp],
) -> Callable[[Any, _Req, grpc.ServicerContext], _Resp]:
    """Decorate a servicer method so every error leaves as a rich status, and bugs say nothing."""

    @functools.wraps(method)
    def wrapper(self: Any, request: _Req, context: grpc.ServicerContext) -> _Resp:
        try:
            return method(self, request, context)
        except AccordError as err:
            status = to_status(err)
            if status.code == grpc.StatusCode.INTERNAL:  # e.g. DataError: the operator's, not the caller's
                log.exception("error in %s that the caller cannot fix", method.__qualname__)
        except InternalError as err:
            log.error("internal error (a bug) in %s: %s", method.__qualname__, err.message, exc_info=True)
            status = to_status(err)
        except Exception:
            log.exception("unexpected error in %s", method.__qualname__)
            status = to_status(InternalError(INTERNAL_MESSAGE))
        context.abort_with_status(status)
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    return wrapper


_STATUS_BY_CODE: dict[grpc.StatusCode, type[AccordError]] = {
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Unavailable,
}


def error_from_rpc(err: grpc.RpcError, peer: str = "server") -> Failure:
    """Rebuild our exception from a failed call (rich details when present)."""
    code: grpc.StatusCode = err.code()
    message: str = err.details() or f"{peer} returned {code.name}"
    try:
        status = rpc_status.from_call(err)
    except (ValueError, DecodeError):
        # Details that contradict the call's code or message, or are not a Status at all: a
        # broken or hostile peer. Fall back to the code and message the call itself carries.
        log.warning("%s sent rich status details that do not match its status; ignoring them", peer)
        status = None
    infos: list[error_details_pb2.ErrorInfo] = []
    violations: list[Violation] = []
    quota: list[error_details_pb2.QuotaFailure.Violation] = []
    retry_after: float | None = None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                br = error_details_pb2.BadRequest()
                detail.Unpack(br)
                violations += [Violation(v.field, v.description) for v in br.field_violations]
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                infos.append(info)
            elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
                qf = error_details_pb2.QuotaFailure()
                detail.Unpack(qf)
                quota += list(qf.violations)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_after = retry.retry_delay.ToNanoseconds() / 1e9
    reason = infos[0].reason if infos else code.name
    metadata = dict(infos[0].metadata) if infos else {}
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidQuery(message, tuple(violations))
    if code is grpc.StatusCode.NOT_FOUND:
        return NotFound(message, tuple(violations))
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated(message, reason, metadata)
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(message, reason, metadata)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        if reason == "BUDGET_EXHAUSTED" or quota:
            subject = quota[0].subject if quota else peer
            return BudgetExhausted(message, subject, metadata.get("remaining", "0"))
        return ResourceLimit(message, retry_after)
    if code is grpc.StatusCode.ABORTED and reason == "SHARES_INVALID":
        return IntegrityError(f"{peer}: {message}")
    if code is grpc.StatusCode.UNAVAILABLE and reason == "NODES_MISSING":
        return PartialFailure(message, metadata)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED and reason == AnswerTimeExceeded.reason:
        return AnswerTimeExceeded(f"{peer}: {message}", metadata.get("setting", ""))
    cls = _STATUS_BY_CODE.get(code)
    if cls is not None:
        return cls(f"{peer}: {message}")
    return InternalError(f"{peer}: {message}")
