"""Eager start: an ASGI request's first step runs at once, in the read callback.

Why: most requests are answered in their first step (the app never waits for anything),
yet a task per request runs that step a loop turn later, after every other connection's
read of the same epoll batch. With many connections that is a cache-cold second visit to
each connection's objects (socket, transport, protocol, parser), and a task's creation,
scheduling and completion on top. Run inline, a request is read, served and written while
its objects are hot, and needs no task of its own.

What the app sees is still a task's step: `asyncio.current_task()` is a real Task (the
*host*), contextvars set by the step live in a fresh context of the request's own, and a
watchdog report names the request. Python 3.12's eager tasks do the same inside asyncio;
on 3.11 the pieces are `_enter_task`/`_leave_task`, which asyncio's own tasks call around
each step.

The host is one pending task per worker, waiting for a request to adopt. A step that
finishes leaves the host idle for the next request's step. A step that awaits (its
coroutine yields a future) makes the host that request's task: the host carries on
driving the same coroutine, in the same context, so everything that saw the host as the
current task in the first step (anyio cancel scopes, `asyncio.timeout`, task groups) sees
the same task to the end. A fresh host is made for the next request. A request that
awaits pays for the inline attempt, the adoption, and a generator hop per resumption.

Eager start pays where first steps finish; a request that awaits costs more than a
task of its own would. So each worker watches the outcome: over a housekeeping interval
(0.5 s), if more first steps awaited than finished, requests get tasks of their own for
the next few seconds (REST_TICKS), then eager start is tried again (`Hosts.review`).

One difference from a task per request remains: requests answered in their first step
share the host as their current task, one after another. State an app keys by
`current_task()` and leaves behind is seen by the next such request; `--no-eager-start`
gives every request a task of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context
from typing import Any, Final

# A request task's name (CPython would format a fresh "Task-N" for each one).
TASK_NAME: Final = "steadyloop-request"
# What a host is given to run: the request's runner, and the request.
_Adoption = tuple[Callable[[Any], Coroutine[Any, Any, None]], Any]
# Housekeeping ticks (of 0.5 s) that requests get tasks of their own for, once more first
# steps awaited than finished in a tick.
REST_TICKS: Final = 20


class Hosts:
    """One worker's idle host task (see the module's docstring). Loop thread only."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: asyncio.Task[None] | None = None
        self._adopt: asyncio.Future[_Adoption] | None = None
        self.enabled = True  # False: requests get tasks of their own (see review)
        self.finished = 0  # first steps that finished, since the last review
        self.adopted = 0  # first steps that awaited, since the last review
        self._resting = 0  # reviews left before eager start is tried again

    def review(self) -> None:
        """Called by the housekeeping timer: turn eager start off for a while when it costs
        more than it saves (more first steps awaited than finished), then try it again."""
        if self._resting:
            self._resting -= 1
            self.enabled = not self._resting
        elif self.adopted > self.finished:
            self.enabled = False
            self._resting = REST_TICKS
        self.finished = self.adopted = 0

    def new_host(self) -> asyncio.Task[None]:
        """A new idle host, for when there is none (or it was cancelled: a shutdown cancels
        every pending task). Callers use `idle` while it is not done."""
        adopt: asyncio.Future[_Adoption] = self.loop.create_future()
        self._adopt = adopt
        idle = self.idle = asyncio.Task(_host(adopt), loop=self.loop, name=TASK_NAME)
        return idle

    def adopt(self, run: Callable[[Any], Coroutine[Any, Any, None]], request: Any) -> asyncio.Task[None]:
        """The idle host becomes the task that runs `run(request)` (which carries on the
        request whose first step just awaited); the next request's step gets a new host.
        The coroutine is made by the host when it runs: a host cancelled before that (a
        shutdown) leaves no coroutine never awaited behind."""
        host, adopt = self.idle, self._adopt
        assert host is not None and adopt is not None
        self.idle = self._adopt = None
        adopt.set_result((run, request))
        return host


async def _host(adopt: asyncio.Future[_Adoption]) -> None:
    run, request = await adopt
    await run(request)


class Resumed:
    """Awaitable: the rest of a coroutine whose first step ran eagerly and yielded
    `yielded`. Awaited in the host task, it hands `yielded` (the future the coroutine waits
    for) to the task, and passes every resumption on to the coroutine, in `context`."""

    __slots__ = ("context", "coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, None], yielded: Any, context: Context) -> None:
        self.coro = coro
        self.yielded = yielded
        self.context = context

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Generator[Any, Any, None]:
        coro = self.coro
        run: Callable[..., Any] = self.context.run
        send, throw = coro.send, coro.throw
        yielded = self.yielded
        self.yielded = None
        while True:
            try:
                value = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the task: a cancellation, mostly
                try:
                    yielded = run(throw, exc)
                except StopIteration:
                    return
            else:
                try:
                    yielded = run(send, value)
                except StopIteration:
                    return
