"""Run something around every call a gRPC handler serves: the building block of our interceptors.

gRPC's Python server interceptors see a call's method name but not its context; to act on the
caller (its certificate) or to hold a slot for the call's whole life, they replace the handler's
behaviour with one that runs ``enter(context)`` first and ``leave()`` after, for all four kinds
of handler (a streaming call is held until its last message).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

__all__ = ["around_each_call"]


def around_each_call(
    handler: Any, enter: Callable[[grpc.ServicerContext], None], leave: Callable[[], None] | None = None
) -> Any:
    """``handler`` (a ``grpc.RpcMethodHandler``) whose behaviour runs ``enter(context)`` before each
    call and ``leave()`` after it, also when the call fails, but not when ``enter`` raised (an
    ``enter`` that refuses aborts the call through its context)."""

    def unary(behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            enter(context)
            try:
                return behavior(request, context)
            finally:
                if leave is not None:
                    leave()

        return wrapped

    def stream(behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Iterator[Any]]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            enter(context)
            try:
                yield from behavior(request, context)
            finally:
                if leave is not None:
                    leave()

        return wrapped

    if handler.unary_unary is not None:
        return handler._replace(unary_unary=unary(handler.unary_unary))
    if handler.stream_unary is not None:
        return handler._replace(stream_unary=unary(handler.stream_unary))
    if handler.unary_stream is not None:
        return handler._replace(unary_stream=stream(handler.unary_stream))
    return handler._replace(stream_stream=stream(handler.stream_stream))
