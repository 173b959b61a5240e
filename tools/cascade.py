"""Would a cascade pay: the edge model first, SFace only when the edge score is uncertain?

On every pair among LFW's DevTest images (the same pairs as the model card's TAR at FAR 1e-3),
from embeddings of both models computed once and cached: for each band [low, high) of edge
scores, a pair above the band is accepted, below it rejected, inside it decided by SFace at a
threshold that holds the cascade's overall FAR at 1e-3 on these impostor pairs. Cost per face:
the edge model always, SFace for the share of pairs in the band (the larger of the genuine and
impostor shares, so it holds whoever walks up), in each model's ms per face from its metadata.

    python tools/cascade.py --lfw-root path/to/lfw --cache-dir /work/data/cache --out dir

Ships (prints "ship") only when a band chosen on one half of DevTest's people keeps SFace's TAR
at FAR 1e-3 within 0.5 points on the other half at no more than 30% of SFace's embedding cost
per face, both ways round (the edge model trained on DevTrain's people, so their scores would
choose a band for faces it has seen).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from siamese.runtime import model_zoo
from siamese.runtime.embedder import Embedder
from siamese.train import face_cache, metrics
from siamese.train.lfw import LFW

FAR = 1e-3
MAX_TAR_LOSS = 0.005
MAX_COST = 0.30


def devtest_embeddings(name: str, lfw: LFW, cache_dir: Path | None, out: Path):
    """(embeddings, labels) of every DevTest image with model `name`, cached in `out`."""
    path = out / f"devtest-{name}.npz"
    if path.is_file():
        data = np.load(path)
        return data["embeddings"], data["labels"]
    faces, _ = face_cache.prepare("lfw", lfw.image_root, lfw.images, cache_dir, progress=False)
    records = faces.select(set(lfw.view1_test_people))
    labels = np.unique([r.identity for r in records], return_inverse=True)[1]
    embeddings = Embedder(model_zoo.resolve(name)).embed(
        np.stack([faces.crop(r.path) for r in records]))
    out.mkdir(parents=True, exist_ok=True)
    np.savez(path, embeddings=embeddings, labels=labels)
    return embeddings, labels


def cascade_tar(edge: tuple, sface: tuple, low: float, high: float,
                threshold: float | None = None):
    """(TAR, FAR, genuine share in band, impostor share in band, SFace threshold) of one band.

    Without `threshold`, SFace's in-band threshold is the one that holds the cascade's FAR at
    1e-3 on these impostors (as TAR at FAR 1e-3 is measured); None when the band's upper edge
    alone lets more through."""
    (eg, ei), (sg, si) = edge, sface
    band_g, band_i = (eg >= low) & (eg < high), (ei >= low) & (ei < high)
    if threshold is None:
        allowed = int(FAR * len(ei)) - int((ei >= high).sum())  # false accepts left for SFace
        if allowed < 0:
            return None
        inside = si[band_i]
        threshold = (np.partition(inside, len(inside) - 1 - allowed)[len(inside) - 1 - allowed]
                     + 1e-7 if allowed < len(inside) else -np.inf)
    tar = ((eg >= high) | (band_g & (sg >= threshold))).mean()
    far = ((ei >= high) | (band_i & (si >= threshold))).mean()
    return float(tar), float(far), float(band_g.mean()), float(band_i.mean()), float(threshold)


def bands(edge: tuple, sface: tuple, cost: dict) -> list[tuple]:
    """(relative cost, TAR, low, high, genuine share, impostor share, SFace threshold) of every
    band between 26 quantiles of the edge scores."""
    quantiles = np.quantile(np.concatenate([edge[0], edge[1][::97]]), np.linspace(0, 1, 26))
    rows = []
    for i, low in enumerate(quantiles):
        for high in quantiles[i + 1:]:
            result = cascade_tar(edge, sface, low, high)
            if result is not None:
                tar, _, share_g, share_i, threshold = result
                relative = (cost["edge"] + max(share_g, share_i) * cost["sface"]) / cost["sface"]
                rows.append((relative, tar, low, high, share_g, share_i, threshold))
    return rows


def describe(label: str, row: tuple | None) -> str:
    if row is None:
        return f"{label}: none"
    relative, tar, low, high, share_g, share_i, _ = row
    return (f"{label}: edge band [{low:.4f}, {high:.4f}), SFace on {100 * share_g:.1f}% of "
            f"genuine and {100 * share_i:.2f}% of impostor pairs, TAR {100 * tar:.2f}%, cost "
            f"{100 * relative:.1f}% of SFace's")


def held_out(e_emb, s_emb, labels, cost: dict, seed: int = 0) -> bool:
    """The band chosen on one half of the people, scored on the other, both ways round.
    True when both scored halves meet the bar."""
    people = np.random.default_rng(seed).permutation(labels.max() + 1)
    half = len(people) // 2
    halves = [np.isin(labels, people[:half]), np.isin(labels, people[half:])]
    scores = []
    for keep in halves:
        scores.append((metrics.all_pair_scores(e_emb[keep], labels[keep], "cosine"),
                       metrics.all_pair_scores(s_emb[keep], labels[keep], "cosine")))
    passed = True
    for choose, score in ((0, 1), (1, 0)):
        (edge_c, sface_c), (edge_s, sface_s) = scores[choose], scores[score]
        bar = metrics.tar_at_far(*sface_c, FAR) - MAX_TAR_LOSS
        fits = [b for b in bands(edge_c, sface_c, cost) if b[1] >= bar]
        if not fits:
            click.echo(f"half {choose + 1}: no band within 0.5 points")
            passed = False
            continue
        relative, _, low, high, *_, threshold = min(fits)
        sface_tar = metrics.tar_at_far(*sface_s, FAR)
        tar, _, share_g, share_i, _ = cascade_tar(edge_s, sface_s, low, high) or (0, 0, 0, 0, 0)
        fixed_tar, fixed_far, *_ = cascade_tar(edge_s, sface_s, low, high, threshold)
        relative = (cost["edge"] + max(share_g, share_i) * cost["sface"]) / cost["sface"]
        ok = tar >= sface_tar - MAX_TAR_LOSS and relative <= MAX_COST
        passed &= ok
        click.echo(f"band [{low:.4f}, {high:.4f}) chosen on half {choose + 1}, scored on half "
                   f"{score + 1} ({len(edge_s[0]):,} genuine, {len(edge_s[1]):,} impostor pairs): "
                   f"TAR at FAR 1e-3 {100 * tar:.2f}% (SFace {100 * sface_tar:.2f}%), cost "
                   f"{100 * relative:.1f}%; at half {choose + 1}'s SFace threshold "
                   f"{threshold:.4f}: TAR {100 * fixed_tar:.2f}%, FAR {fixed_far:.2e} "
                   f"-> {'meets' if ok else 'misses'} the bar")
    return passed


@click.command()
@click.option("--lfw-root", required=True, type=click.Path(path_type=Path))
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Aligned-face cache root.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Where the per-model DevTest embeddings are cached.")
def main(lfw_root: Path, cache_dir: Path | None, out: Path) -> None:
    """Print the best bands, their held-out check, and whether the cascade meets its bar."""
    lfw = LFW(lfw_root)
    e_emb, labels = devtest_embeddings("edge", lfw, cache_dir, out)
    s_emb, s_labels = devtest_embeddings("sface", lfw, cache_dir, out)
    assert (labels == s_labels).all()
    edge = metrics.all_pair_scores(e_emb, labels, "cosine")
    sface = metrics.all_pair_scores(s_emb, labels, "cosine")
    cost = {n: Embedder(model_zoo.resolve(n)).info.measured["ms_per_face"] for n in ("edge",
                                                                                     "sface")}
    sface_tar = metrics.tar_at_far(*sface, FAR)
    edge_tar = metrics.tar_at_far(*edge, FAR)
    click.echo(f"{len(edge[0]):,} genuine, {len(edge[1]):,} impostor pairs; TAR at FAR 1e-3: "
               f"SFace {100 * sface_tar:.2f}%, edge {100 * edge_tar:.2f}%; ms per face: edge "
               f"{cost['edge']:.2f}, SFace {cost['sface']:.2f}")
    rows = bands(edge, sface, cost)
    fits = [b for b in rows if b[1] >= sface_tar - MAX_TAR_LOSS]
    click.echo(describe("chosen and scored on all DevTest, cheapest band within 0.5 points",
                        min(fits) if fits else None))
    click.echo(describe("best TAR at <= 30% cost", max(
        (b for b in rows if b[0] <= MAX_COST), key=lambda b: b[1], default=None)))
    ship = held_out(e_emb, s_emb, labels, cost)
    click.echo("ship: the band chosen on either half of the people meets the bar on the other"
               if ship else "do not ship: a band chosen on one half of the people misses the "
               "bar on the other")


if __name__ == "__main__":
    main()
