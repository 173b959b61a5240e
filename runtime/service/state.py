"""Everything one running server holds: config, keys, engine, audit log, limits, counters."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from siamese.runtime.liveness.challenge import ChallengeConfig
from siamese.runtime.model_zoo import gallery_model
from siamese.runtime.service.audit import AuditLog, create_key, load_key
from siamese.runtime.service.config import ServiceConfig
from siamese.runtime.service.engine import Engine
from siamese.runtime.service.guards import FailureLimiter, RateLimiter
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
    failures: FailureLimiter = field(default_factory=FailureLimiter)
    sessions: int = 0  # authenticated WebSocket sessions (a door's slots)
    # sockets still waiting for their start message (oldest first), each with its eviction
    unauthenticated: dict[object, asyncio.Event] = field(default_factory=dict)
    # the sessions' challenge and its random source; `siamese-serve run` never changes them
    # (a test fixes the order from Python: its only way in)
    challenge: ChallengeConfig = field(default_factory=ChallengeConfig)
    challenge_rng: random.Random | None = None

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
        return cls(config, keys, engine, AuditLog(config.audit, _audit_key(config)),
                   RateLimiter(config.rate_per_s, config.burst))

    async def record(self, key: str, route: str, person: str | None = None,
               score: float | None = None, decision: str | None = None,
               liveness: dict | None = None, reason: str | None = None) -> None:
        """One audit line (written and fsynced off the event loop) and one decision count;
        `liveness` is the check's result (mode, result, reason, signals) for decisions."""
        await asyncio.to_thread(self.audit.append, key=key, route=route, person=person,
                          score=None if score is None else round(float(score), 4),
                          decision=decision, liveness=liveness,
                          **({} if reason is None else {"reason": reason}))
        if decision is not None:
            self.metrics.decision(route, decision)

    def close(self) -> None:
        self.engine.close()
        self.audit.close()


def _audit_key(config: ServiceConfig) -> bytes:
    """The audit key; a new one only for a new log (an existing log keeps its key)."""
    path = config.audit_key_path
    if not path.exists() and not config.audit.exists():
        return create_key(path)
    return load_key(path)
