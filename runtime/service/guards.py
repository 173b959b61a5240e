"""The service's front door: keys checked from the headers before any body is read, failed
attempts limited per client address, per-key rate limits, and the request body bounded in size
and in time while it streams in."""

from __future__ import annotations

import asyncio
import json
import math
import time

from siamese.runtime.service.engine import ServiceError


class RateLimiter:
    """A token bucket per key: `burst` at once, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> None:
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            wait = math.ceil((1 - tokens) / self.rate)
            self._buckets[key] = (tokens, now)
            raise ServiceError(429, f"rate limit of {self.rate:g} requests/s for this key",
                               {"Retry-After": str(wait)})
        self._buckets[key] = (tokens - 1, now)


class FailureLimiter:
    """Failed key attempts per client address: `burst` at once, then one every `every_s`.
    A blocked address gets 429 before its key is even looked at (no guessing at speed)."""

    def __init__(self, burst: int = 10, every_s: float = 6.0, max_clients: int = 10_000) -> None:
        self.burst, self.every_s, self.max_clients = burst, every_s, max_clients
        self._failures: dict[str, tuple[float, float]] = {}  # client -> (count, last)

    def _count(self, client: str, now: float) -> float:
        count, last = self._failures.get(client, (0.0, now))
        return max(0.0, count - (now - last) / self.every_s)

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try a key again, or None when it may now."""
        over = self._count(client, time.monotonic()) + 1 - self.burst
        return None if over <= 0 else max(1, math.ceil(over * self.every_s))

    def failed(self, client: str) -> None:
        now = time.monotonic()
        if len(self._failures) >= self.max_clients and client not in self._failures:
            self._failures = {c: v for c, v in self._failures.items()
                              if self._count(c, now) > 0}  # forget the forgiven
        self._failures[client] = (self._count(client, now) + 1, now)


def bearer_key(headers: dict[bytes, bytes]) -> str | None:
    """The key of an `Authorization: Bearer KEY` header, or None."""
    value = headers.get(b"authorization", b"").decode("latin-1")
    return value[7:].strip() or None if value.lower().startswith("bearer ") else None


PUBLIC = ("/healthz", "/kiosk", "/admin")  # and /static/...: no key (pages hold none)


class KeyGate:
    """ASGI middleware: an HTTP request to a keyed route is answered 401 (unknown or missing
    key) or 429 (too many failed keys from its address) from its headers alone, before any
    byte of its body is read; the key's entry rides in scope["state"]["key_entry"]."""

    def __init__(self, app, state) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") == "OPTIONS" or path in PUBLIC \
                or path.startswith("/static/"):
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("unknown", 0))[0]
        failures = self.state.failures
        wait = failures.retry_after(client)
        if wait is not None:
            return await refuse(send, 429, "too many failed key attempts from this address",
                                [(b"retry-after", str(wait).encode())])
        key = bearer_key(dict(scope.get("headers") or []))
        entry = self.state.keys.authenticate(key) if key else None
        if entry is None:
            failures.failed(client)
            message = "unknown API key" if key else \
                "missing API key: send Authorization: Bearer KEY"
            return await refuse(send, 401, message, [(b"www-authenticate", b"Bearer")])
        scope.setdefault("state", {})["key_entry"] = entry
        return await self.app(scope, receive, send)


async def refuse(send, status: int, message: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer `status` with {"error": message} and close the connection (the body unread)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                            (b"cache-control", b"no-store"), *(headers or [])]})
    await send({"type": "http.response.body", "body": json.dumps({"error": message}).encode()})


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, by its Content-Length or as it
    streams (chunked uploads), before the multipart parser spools it anywhere; 408 for a body
    that has not arrived within `deadline_s` of the request (a slowly trickled upload)."""

    def __init__(self, app, limit: int, deadline_s: float = 10.0) -> None:
        self.app, self.limit, self.deadline_s = app, limit, deadline_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(send, 413)
        seen, failed, started, complete = 0, None, False, False
        deadline = time.monotonic() + self.deadline_s

        async def counted():
            nonlocal seen, failed, complete
            if complete:  # after the body: a wait for the disconnect, no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                failed = 408
                raise BodyTooSlow from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if seen > self.limit:
                    failed = 413
                    raise BodyTooLarge
            return message

        async def tracked(message):
            nonlocal started
            if failed:  # the parser gave up on our exception: its answer becomes ours
                if message["type"] == "http.response.start":
                    started = True
                    await self._refuse(send, failed)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except (BodyTooLarge, BodyTooSlow):
            if not started:
                await self._refuse(send, failed)

    async def _refuse(self, send, status: int) -> None:
        message = f"request body over the limit of {self.limit:,} bytes" if status == 413 \
            else f"request body not received within {self.deadline_s:g} s"
        await refuse(send, status, message)
