"""Application event handlers run guarded: an exception is logged, never propagated.

Why: pyee's AsyncIOEventEmitter turns a handler's exception into an "error" event and,
when nobody listens for "error", raises it from `emit()`. aiortc emits a data channel's
"message" from inside its SCTP receive path, so `channel.on("message", lambda m: 1/0)`
raised through SCTP into DTLS, which closed: the whole connection died for an
application bug (issue 7). A peer connection event emitted inside setLocalDescription
(signalingstatechange) or inside the SCTP path (datachannel) did the same to the call
that emitted it.

What: webrtc-pc reports an exception thrown by an event handler and carries on; we log it
with `logging.exception` (logger `unbroken.peerconnection.handlers`) and carry on, for
plain and async handlers alike, and the event's other handlers still run. An "error"
listener no longer receives handler exceptions: the log is where they go.

How: pyee calls `self._emit_run(f, args, kwargs)` once per handler (pyee 11 to 13).
`GuardedEmitter` overrides it for classes we define (RTCPeerConnection); `guard(obj)`
gives one object made elsewhere (aiortc's data channels, remote tracks, SCTP and DTLS
transports, our ICE transport) the same method. `_emit_run` is a protected member of
pyee: tests/test_aiortc_contract.py fails loudly if a pyee release stops calling it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

_pending: set[asyncio.Future[Any]] = set()
"""Async handlers still running, for emitters without pyee's own set (keeps them alive)."""

E = TypeVar("E")


def _describe(emitter: Any, handler: Callable[..., Any]) -> str:
    name = getattr(handler, "__qualname__", None) or repr(handler)
    return f"{type(emitter).__name__} event handler {name}"


def run_guarded(
    emitter: Any, handler: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Call one event handler; log what it raises, now or (if async) when it finishes."""
    try:
        result = handler(*args, **kwargs)
    except Exception:
        logger.exception("%s raised; the event was delivered anyway", _describe(emitter, handler))
        return
    if not inspect.isawaitable(result):
        return
    future = asyncio.ensure_future(result)
    waiting = getattr(emitter, "_waiting", None)  # pyee's set: wait_for_complete()/cancel()
    holder: set[asyncio.Future[Any]] = waiting if isinstance(waiting, set) else _pending
    holder.add(future)

    def finished(done: asyncio.Future[Any]) -> None:
        holder.discard(done)
        if done.cancelled():
            return
        exc = done.exception()
        if exc is not None:
            logger.error(
                "%s raised; the event was delivered anyway",
                _describe(emitter, handler),
                exc_info=exc,
            )

    future.add_done_callback(finished)


class GuardedEmitter:
    """Mixin for a pyee emitter class: every handler runs through `run_guarded`."""

    def _emit_run(
        self, f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        run_guarded(self, f, args, kwargs)


def _guarded_emit_run(
    self: Any, f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    run_guarded(self, f, args, kwargs)


def guard(emitter: E) -> E:
    """Make this emitter object run its handlers guarded; returns it (idempotent)."""
    if not callable(getattr(type(emitter), "_emit_run", None)):
        raise TypeError(f"{type(emitter).__name__} is not a pyee event emitter")
    if not is_guarded(emitter):
        emitter._emit_run = types.MethodType(_guarded_emit_run, emitter)  # type: ignore[attr-defined]
    return emitter


def is_guarded(emitter: Any) -> bool:
    """True when `emitter` runs its handlers through `run_guarded`."""
    method = getattr(emitter, "_emit_run", None)
    return getattr(method, "__func__", None) in (_guarded_emit_run, GuardedEmitter._emit_run)
