"""Would a cascade pay: the edge model first, SFace only when the edge score is uncertain?

On every pair among LFW's DevTest images (the same pairs as the model card's TAR at FAR 1e-3),
from embeddings of both models computed once and cached: for each band [low, high) of edge
scores, a pair above the band is accepted, below it rejected, inside it decided by SFace at a
threshold that holds the cascade's overall FAR at 1e-3 on these impostor pairs. Cost per face:
the edge model always, SFace for the share of pairs in the band (the larger of the genuine and
impostor shares, so it holds whoever walks up), in each model's ms per face from its metadata.

    python tools/cascade.py --lfw-root path/to/lfw --cache-dir /work/data/cache --out dir

Ships (prints "ship") only when some band keeps SFace's TAR at FAR 1e-3 within 0.5 points at
no more than 30% of SFace's embedding cost per face.
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


def cascade_tar(edge: tuple, sface: tuple, low: float, high: float):
    """(TAR at FAR 1e-3, genuine share in band, impostor share in band) of one band."""
    (eg, ei), (sg, si) = edge, sface
    band_g, band_i = (eg >= low) & (eg < high), (ei >= low) & (ei < high)
    accepted_i = int((ei >= high).sum())
    allowed = int(FAR * len(ei)) - accepted_i  # false accepts left for SFace inside the band
    if allowed < 0:
        return None
    inside = si[band_i]
    threshold = (np.partition(inside, len(inside) - 1 - allowed)[len(inside) - 1 - allowed]
                 + 1e-7 if allowed < len(inside) else -np.inf)
    tar = ((eg >= high) | (band_g & (sg >= threshold))).mean()
    return float(tar), float(band_g.mean()), float(band_i.mean())


@click.command()
@click.option("--lfw-root", required=True, type=click.Path(path_type=Path))
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Aligned-face cache root.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Where the per-model DevTest embeddings are cached.")
def main(lfw_root: Path, cache_dir: Path | None, out: Path) -> None:
    """Print the best bands and whether the cascade meets its bar."""
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
    quantiles = np.quantile(np.concatenate([edge[0], edge[1][::97]]), np.linspace(0, 1, 26))
    best = []
    for i, low in enumerate(quantiles):
        for high in quantiles[i + 1:]:
            result = cascade_tar(edge, sface, low, high)
            if result is None:
                continue
            tar, share_g, share_i = result
            relative = (cost["edge"] + max(share_g, share_i) * cost["sface"]) / cost["sface"]
            best.append((relative, tar, low, high, share_g, share_i))
    fits = [b for b in best if b[1] >= sface_tar - MAX_TAR_LOSS]
    cheapest = min(fits) if fits else None
    for label, row in (("cheapest band within 0.5 points", cheapest),
                       ("best TAR at <= 30% cost",
                        max((b for b in best if b[0] <= MAX_COST), key=lambda b: b[1],
                            default=None))):
        if row is None:
            click.echo(f"{label}: none")
            continue
        relative, tar, low, high, share_g, share_i = row
        click.echo(f"{label}: edge band [{low:.4f}, {high:.4f}), SFace on {100 * share_g:.1f}% "
                   f"of genuine and {100 * share_i:.2f}% of impostor pairs, TAR {100 * tar:.2f}%, "
                   f"cost {100 * relative:.1f}% of SFace's")
    ship = cheapest is not None and cheapest[0] <= MAX_COST
    click.echo("ship" if ship else "do not ship: no band keeps TAR within 0.5 points at <= 30% "
               "of SFace's cost")


if __name__ == "__main__":
    main()
