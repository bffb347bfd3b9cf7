"""uvicorn's graceful shutdown without losing a request the kernel already holds.

At SIGTERM uvicorn stops listening and, in the same step, closes every connection that has
no request in progress. A keep-alive connection whose next request has arrived but has not
been read yet (the event loop was busy, say with a large batch) counts as idle: it is
closed with the request unread, the kernel answers with a reset, and the client loses a
request it sent before the signal (the race in Kludex/uvicorn#3124). Here the server stops
listening, lets the event loop read what has already arrived, and only then shuts down as
uvicorn does: those requests are answered by then, or in progress and answered like any
other in-flight request; then their connections are closed.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn

# Long enough for one pass of the event loop over the ready sockets (a timed sleep, unlike
# sleep(0), always lets the loop poll before it resumes); short against the grace period.
READ_ARRIVED_SECONDS = 0.05


class GracefulServer(uvicorn.Server):
    """uvicorn.Server whose shutdown reads the requests already received before it closes
    the idle connections. (It replaces KServe's subclass, which only adds TLS certificate
    refreshing; this server does not terminate TLS.)"""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connection; uvicorn's own close() again is harmless
        await asyncio.sleep(READ_ARRIVED_SECONDS)
        await super().shutdown(sockets)
