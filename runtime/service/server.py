"""Run the app on uvicorn: TLS when asked, bounded WebSocket messages, a deadline on request
headers, graceful shutdown."""

from __future__ import annotations

import asyncio

import uvicorn
from siamese.runtime.service.main import create_app
from siamese.runtime.service.state import Service
from uvicorn.protocols.http.h11_impl import H11Protocol

GRACE_S = 10  # on SIGTERM/SIGINT: stop accepting, let requests in flight finish this long
HEADER_TIMEOUT_S = 10.0  # a request's headers must arrive within this (slowloris)


class HeaderDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on each request's headers: a client that
    trickles them (or opens a connection and sends nothing) is disconnected after
    HEADER_TIMEOUT_S instead of holding the connection."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting = None  # the request cycle that was current when the clock started
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is not None and self.cycle is not self._waiting:
            self._disarm()  # a new request's headers are complete
        elif self._deadline is None and self.cycle is not None and self.cycle.response_complete:
            self._arm()  # bytes of the next request on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._waiting = self.cycle
        self._deadline = self.loop.call_later(self.header_timeout_s, self._late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _late(self) -> None:
        self._deadline = None
        if self.cycle is self._waiting:  # still no complete request headers
            self.transport.close()


def uvicorn_config(state: Service, **overrides) -> uvicorn.Config:
    """The server's settings (also used by the tests' in-process server)."""
    config = state.config
    settings = dict(host=config.host, port=config.port, log_level="warning",
                    ssl_certfile=None if config.cert is None else str(config.cert),
                    ssl_keyfile=None if config.key is None else str(config.key),
                    ws_max_size=config.max_frame_bytes + 1024, timeout_keep_alive=5,
                    timeout_graceful_shutdown=GRACE_S, limit_concurrency=2048,
                    server_header=False, proxy_headers=False, http=HeaderDeadline)
    settings.update(overrides)
    return uvicorn.Config(create_app(state), **settings)


def serve(state: Service) -> None:
    uvicorn.Server(uvicorn_config(state)).run()
