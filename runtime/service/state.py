"""Everything one running server holds: config, keys, engine, audit log, limits, counters."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from siamese.runtime.model_zoo import gallery_model
from siamese.runtime.service.audit import AuditLog
from siamese.runtime.service.config import ServiceConfig
from siamese.runtime.service.engine import Engine
from siamese.runtime.service.guards import RateLimiter
from siamese.runtime.service.keys import KeyStore
from siamese.runtime.service.metrics import Metrics
from siamese.runtime.verifier import Verifier, VerifyConfig


@dataclass
class Service:
    config: ServiceConfig
    keys: KeyStore
    engine: Engine
    audit: AuditLog
    limiter: RateLimiter
    metrics: Metrics = field(default_factory=Metrics)
    sessions: int = 0

    @classmethod
    def start(cls, config: ServiceConfig, verifier: Verifier | None = None) -> Service:
        """Check the config, load the model once, open the keys, gallery and audit log."""
        config.check()
        keys = KeyStore(config.keys)
        verifier = verifier or Verifier.from_model(
            gallery_model(config.gallery, config.model, "door"),
            config=VerifyConfig(threshold=config.threshold))
        engine = Engine(verifier, config.gallery, config.workers, config.queue,
                        config.max_pixels, config.request_timeout_s)
        return cls(config, keys, engine, AuditLog(config.audit),
                   RateLimiter(config.rate_per_s, config.burst))

    async def record(self, key: str, route: str, person: str | None = None,
               score: float | None = None, decision: str | None = None,
               liveness: str | None = None) -> None:
        """One audit line (written and fsynced off the event loop) and one decision count."""
        await asyncio.to_thread(self.audit.append, key=key, route=route, person=person,
                          score=None if score is None else round(float(score), 4),
                          decision=decision, liveness=liveness)
        if decision is not None:
            self.metrics.decision(route, decision)

    def close(self) -> None:
        self.engine.close()
        self.audit.close()
