"""Measure enrolment consistency rules on held-out people: how many genuine sets of 2-5 photos
each rule accepts, and how many mixed sets it refuses (issue 16, docs/RELIABILITY.md).

    python tools/eval_enrol_consistency.py /work/shared/data/lfw --people 300 --sets 2000

Photos of LFW DevTest people (never trained on) are embedded once through the verifier's own
enrolment path (detector, quality gate, packaged model). Genuine sets: 2-5 photos of one person.
Mixed sets: 2-5 photos of as many different people ("all different"), and n-1 photos of one
person plus one of another ("one intruder"). Rules: the pairwise minimum score of the set, and
each photo against the mean of the others (mean-vs-rest), as fractions of the model's
balanced-accuracy threshold.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np
from siamese.runtime.consistency import ConsistencyRule, set_scores
from siamese.runtime.errors import SiameseError
from siamese.runtime.verifier import Verifier


@click.command()
@click.argument("lfw", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--people", type=click.IntRange(10, 2000), default=300)
@click.option("--sets", type=click.IntRange(100, 100_000), default=2000)
@click.option("--seed", type=int, default=0)
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Reuse cached embeddings.")
def main(lfw: Path, people: int, sets: int, seed: int, cache_dir: Path | None) -> None:
    verifier = Verifier.from_model(
        cache_dir=cache_dir or Path(tempfile.mkdtemp(prefix="consistency-")))
    rng = np.random.default_rng(seed)
    rows = [line.split("\t") for line in (lfw / "peopleDevTest.txt").read_text().splitlines()[1:]]
    eligible = [(name, int(count)) for name, count in rows if int(count) >= 2]
    chosen = [eligible[i] for i in rng.choice(len(eligible), min(people, len(eligible)),
                                               replace=False)]
    embedded: dict[str, np.ndarray] = {}
    for name, count in chosen:
        vectors = []
        for number in range(1, min(count, 5) + 1):
            try:
                path = lfw / "lfw-deepfunneled" / name / f"{name}_{number:04d}.jpg"
                vectors.append(verifier.reference_embedding(path)[0])
            except SiameseError:
                continue
        if len(vectors) >= 2:
            embedded[name] = np.stack(vectors)
    names = sorted(embedded)
    metric = verifier.embedder.info.metric
    base = verifier.embedder.info.accuracy_threshold or verifier.embedder.info.threshold
    kinds: dict[str, list[tuple[float, float, int]]] = {"genuine": [], "all different": [],
                                                    "one intruder": []}
    for _ in range(sets):
        size = int(rng.integers(2, 6))
        person = embedded[names[rng.integers(len(names))]]
        if len(person) >= size:
            picked = person[rng.choice(len(person), size, replace=False)]
            kinds["genuine"].append((*set_scores(picked, metric), size))
        others = rng.choice(len(names), size, replace=False)
        kinds["all different"].append((*set_scores(np.stack(
            [embedded[names[i]][rng.integers(len(embedded[names[i]]))] for i in others]),
            metric), size))
        host, guest = embedded[names[others[0]]], embedded[names[others[1]]]
        if len(host) >= size - 1:
            picked = host[rng.choice(len(host), size - 1, replace=False)]
            kinds["one intruder"].append((*set_scores(
                np.vstack([picked, guest[rng.integers(len(guest))][None]]), metric), size))
    counts = ", ".join(f"{kind} {len(v)}" for kind, v in kinds.items())
    click.echo(f"{len(names)} DevTest people, {sum(len(v) for v in embedded.values())} photos; "
               f"sets: {counts}; accuracy threshold {base:.4f}")
    click.echo("| rule | limit | genuine accepted | all-different refused | one-intruder refused |")
    click.echo("|---|---|---|---|---|")
    for column, rule in ((0, "pairwise min"), (1, "mean-vs-rest min")):
        for fraction in (0.3, 0.4, 0.5, 0.6, 0.7):
            limit = fraction * base
            rates = [np.mean([s[column] >= limit for s in kinds[k]]) for k in kinds]
            click.echo(f"| {rule} | {fraction:.1f} x = {limit:.3f} | {100 * rates[0]:.1f}% | "
                       f"{100 * (1 - rates[1]):.1f}% | {100 * (1 - rates[2]):.1f}% |")
    rule = ConsistencyRule.for_model(base, metric)
    click.echo(f"the enrolment rule (pairwise min >= {rule.pair_limit:.3f} and mean-vs-rest "
               f">= {rule.mean_limit:.3f}), by set size:")
    click.echo("| photos | genuine accepted | all-different refused | one-intruder refused |")
    click.echo("|---|---|---|---|")
    for size in (2, 3, 4, 5, None):
        cells = []
        for kind, scores in kinds.items():
            chosen_sets = [s for s in scores if size is None or s[2] == size]
            passed = np.mean([s[0] >= rule.pair_limit and s[1] >= rule.mean_limit
                              for s in chosen_sets])
            rate = passed if kind == "genuine" else 1 - passed
            cells.append(f"{100 * rate:.1f}% of {len(chosen_sets)}")
        click.echo(f"| {size or '2-5'} | {' | '.join(cells)} |")
    for kind, scores in kinds.items():
        pair = np.array([s[0] for s in scores])
        click.echo(f"{kind}: pairwise min quantiles 1/5/50/95/99%: "
                   f"{np.round(np.quantile(pair, [0.01, 0.05, 0.5, 0.95, 0.99]), 3).tolist()}")


if __name__ == "__main__":
    main()
