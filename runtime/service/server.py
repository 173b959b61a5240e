"""Run the app on uvicorn: TLS when asked, bounded WebSocket messages, graceful shutdown."""

from __future__ import annotations

import uvicorn
from siamese.runtime.service.config import ServiceConfig
from siamese.runtime.service.main import create_app
from siamese.runtime.service.state import Service

GRACE_S = 10  # on SIGTERM/SIGINT: stop accepting, let requests in flight finish this long


def serve(config: ServiceConfig) -> None:
    state = Service.start(config)
    app = create_app(state)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning",
                ssl_certfile=None if config.cert is None else str(config.cert),
                ssl_keyfile=None if config.key is None else str(config.key),
                ws_max_size=config.max_frame_bytes + 1024, timeout_keep_alive=5,
                timeout_graceful_shutdown=GRACE_S, limit_concurrency=2048,
                server_header=False, proxy_headers=False)
