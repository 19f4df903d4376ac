"""Run something around every call a gRPC handler serves: the building block of our interceptors.

gRPC's Python server interceptors see a call's method name but not its context; to act on the
caller (its certificate) or to hold a slot for the call's whole life, they replace the handler's
behaviour with one that runs ``enter(context)`` first and ``leave()`` after, for all four kinds
of handler (a streaming call is held until its last message).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

__all__ = ["around_each_call"]


def around_each_call(
    handler: Any,
    enter: Callable[[grpc.ServicerContext], None],
    leave: Callable[[], None] | None = None,
    still: Callable[[grpc.ServicerContext], bool] | None = None,
) -> Any:
    """``handler`` (a ``grpc.RpcMethodHandler``) whose behaviour runs ``enter(context)`` before each
    call and ``leave()`` after it, also when the call fails, but not when ``enter`` raised (an
    ``enter`` that refuses aborts the call through its context). A streaming reply sends each
    message only while ``still(context)`` holds, and ends at the first message it does not."""

    def unary(behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            enter(context)
            try:
                return behavior(request, context)
            finally:
                if leave is not None:
                    leave()

        return wrapped

    def stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
        if getattr(behavior, "experimental_non_blocking", False):
            return non_blocking(behavior)

        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            enter(context)
            try:
                for message in behavior(request, context):
                    if still is not None and not still(context):
                        return
                    yield message
            finally:
                if leave is not None:
                    leave()

        return wrapped

    def non_blocking(behavior: Callable[..., Any]) -> Callable[..., Any]:
        # A non-blocking stream (the health service's Watch) returns at once and sends its
        # messages later from its own threads: keep it non-blocking, or every open Watch would
        # hold one of the server's worker threads for as long as its client likes.
        def wrapped(request: Any, context: grpc.ServicerContext, send_response_callback: Any = None) -> Any:
            enter(context)
            send = send_response_callback
            if still is not None and send is not None:
                ended = threading.Event()

                def send(message: Any) -> None:  # None ends the stream
                    if ended.is_set():
                        return
                    if message is None or not still(context):
                        ended.set()
                        send_response_callback(None)
                        return
                    send_response_callback(message)

            try:
                return behavior(request, context, send)
            finally:
                if leave is not None:
                    leave()

        wrapped.experimental_non_blocking = True  # type: ignore[attr-defined]
        wrapped.experimental_thread_pool = getattr(behavior, "experimental_thread_pool", None)  # type: ignore[attr-defined]
        return wrapped

    if handler.unary_unary is not None:
        return handler._replace(unary_unary=unary(handler.unary_unary))
    if handler.stream_unary is not None:
        return handler._replace(stream_unary=unary(handler.stream_unary))
    if handler.unary_stream is not None:
        return handler._replace(unary_stream=stream(handler.unary_stream))
    return handler._replace(stream_stream=stream(handler.stream_stream))
