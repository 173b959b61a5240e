"""Counters for GET /metrics, in Prometheus' text format."""

from __future__ import annotations

from collections import Counter

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, list[float]] = {}  # per route: bucket counts, then sum, count
        self.decisions: Counter[tuple[str, str]] = Counter()

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests[(route, status)] += 1
        row = self.latency.setdefault(route, [0.0] * (len(BUCKETS) + 2))
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                row[i] += 1
        row[-2] += seconds
        row[-1] += 1

    def decision(self, route: str, outcome: str) -> None:
        self.decisions[(route, outcome)] += 1

    def render(self, in_flight: int, capacity: int, people: int, sessions: int) -> str:
        lines = ["# TYPE siamese_requests_total counter"]
        lines += [f'siamese_requests_total{{route="{r}",status="{s}"}} {n}'
                  for (r, s), n in sorted(self.requests.items())]
        lines.append("# TYPE siamese_request_seconds histogram")
        for route, row in sorted(self.latency.items()):
            for bound, count in zip(BUCKETS, row, strict=False):
                lines.append(f'siamese_request_seconds_bucket{{route="{route}",le="{bound}"}} '
                             f"{count:g}")
            lines.append(f'siamese_request_seconds_bucket{{route="{route}",le="+Inf"}} '
                         f"{row[-1]:g}")
            lines.append(f'siamese_request_seconds_sum{{route="{route}"}} {row[-2]:.6f}')
            lines.append(f'siamese_request_seconds_count{{route="{route}"}} {row[-1]:g}')
        lines.append("# TYPE siamese_decisions_total counter")
        lines += [f'siamese_decisions_total{{route="{r}",outcome="{o}"}} {n}'
                  for (r, o), n in sorted(self.decisions.items())]
        lines += ["# TYPE siamese_in_flight gauge", f"siamese_in_flight {in_flight}",
                  "# TYPE siamese_capacity gauge", f"siamese_capacity {capacity}",
                  "# TYPE siamese_people gauge", f"siamese_people {people}",
                  "# TYPE siamese_sessions gauge", f"siamese_sessions {sessions}"]
        return "\n".join(lines) + "\n"
