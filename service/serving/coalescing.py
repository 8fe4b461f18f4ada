"""Held writes: one system call per small answer, and a busy loop pass's answers together at its end.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and the body when the app sends ``http.response.body``:
two system calls and two TCP segments for every answer, and for the client two
wake-ups for one answer. ``CoalescingTransport`` (which the protocols in
``service/serving/compat.py`` put under uvicorn) holds a small write back and sends a
connection's writes in one ``writev``: one system call and one segment per
small answer, as aiohttp does (its pull request 10991).

When the writes leave depends on what else the event loop did in the same
pass. The first answer completed in a pass leaves at once, so under light load
every answer does, and the work a request does after its answer (metrics, task
teardown) overlaps the client's turnaround. Any other answer completed in that
pass waits for the pass's end, and they leave together; Netty's
FlushConsolidationHandler trades write latency for throughput the same way,
handing its flush to the event loop as a task of its own. Under load the
clients then wake once for several answers and send their next requests
together, so every side pays fewer wake-ups per request (measured: see
bench/README.md, "Why the code is shaped so"). A write never waits past the
end of the pass it was made in, so a streaming response's head goes out at
once all the same, and closing the connection sends what is held first.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from typing import Any

# At most this much is held per connection; a write that would hold more (file chunks) goes out at once.
HOLD_AT_MOST = 16 * 1024


class LoopPass:
    """What the connections of one event loop have sent in its current pass, and who waits for its end."""

    __slots__ = ("ending", "first_sent", "loop", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)  # the registry below is keyed weakly by the loop: no strong way back
        self.waiting: list[CoalescingTransport] = []
        self.first_sent = False  # an answer already left in this pass
        self.ending = False  # end() is scheduled

    def end_soon(self) -> None:
        loop = self.loop()
        if not self.ending and loop is not None:
            self.ending = True
            loop.call_soon(self.end)

    def end(self) -> None:
        """The pass is over: send what waited for it, and let the next pass's first answer go at once."""
        self.ending = False
        self.first_sent = False
        waiting, self.waiting = self.waiting, []
        for transport in waiting:
            transport.flush()


_PASSES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopPass] = weakref.WeakKeyDictionary()


def loop_pass(loop: asyncio.AbstractEventLoop) -> LoopPass:
    """The one ``LoopPass`` of an event loop, shared by all its connections."""
    current = _PASSES.get(loop)
    if current is None:
        current = _PASSES[loop] = LoopPass(loop)
    return current


class CoalescingTransport:
    """A transport that holds small writes, sending the pass's first answer at once and others at its end.

    Everything but writing and closing is the wrapped transport's own.
    """

    __slots__ = ("current_pass", "held", "held_bytes", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.current_pass = loop_pass(loop)
        self.held: list[bytes] = []
        self.held_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if (
            type(data) is not bytes or self.held_bytes + len(data) > HOLD_AT_MOST
        ):  # bytes cannot change while held
            self.writelines((data,))
            return
        current = self.current_pass
        if self.held and not current.first_sent:  # a body after its head: the first answer of this pass
            current.first_sent = True  # reset by the pass's end, already due: holding the head scheduled it
            self.writelines((data,))
            return
        if not self.held:
            current.waiting.append(self)
            current.end_soon()
        self.held.append(data)
        self.held_bytes += len(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write now, after what is held, in the same system call."""
        if self.held:
            list_of_data = [*self.take_held(), *list_of_data]
        self.transport.writelines(list_of_data)

    def flush(self) -> None:
        """Send what is held, if anything (at the end of the loop pass, or before closing)."""
        if self.held:
            held = self.take_held()
            if not self.transport.is_closing():
                self.transport.writelines(held)

    def take_held(self) -> list[bytes]:
        held = self.held
        self.held = []
        self.held_bytes = 0
        return held

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self.take_held()
        self.transport.abort()

    def is_closing(self) -> bool:  # asked on every request: worth skipping __getattr__
        return self.transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + self.held_bytes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
