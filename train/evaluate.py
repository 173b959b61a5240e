"""Honest LFW evaluation of an embedding model.

View 1: the accuracy threshold comes from held-out training-side people (stored with the model),
never from the test pairs; the best-threshold (oracle) accuracy is reported beside it, labelled.
ROC AUC, EER and TAR@FAR are measured over every genuine and impostor pair among the DevTest
people's images. View 2 folds that contain people the model trained on are flagged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from siamese.runtime.storage.fileio import check_output_path, write_text_atomic
from siamese.train import metrics
from siamese.train.calibration import Calibration
from siamese.train.face_cache import AlignedFaces
from siamese.train.lfw import LFW, Pair

FAR_TARGETS = (1e-2, 1e-3, 1e-4)

EmbedFn = Callable[[np.ndarray], np.ndarray]  # aligned BGR crops (N, 112, 112, 3) -> (N, D)


def embed_paths(embed: EmbedFn, faces: AlignedFaces, paths: list[str],
                batch_size: int = 256) -> dict[str, np.ndarray]:
    out = {}
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        vectors = embed(np.stack([faces.crop(path) for path in chunk]))
        out.update(zip(chunk, vectors, strict=True))
    return out


def pair_accuracy(embed: EmbedFn, crops: dict[str, np.ndarray], pairs: list[Pair], metric: str,
                  threshold: float) -> float:
    """Accuracy on `pairs` at `threshold`; each distinct image's crop is embedded once."""
    paths = sorted(crops)
    vectors = dict(zip(paths, embed(np.stack([crops[p] for p in paths])), strict=True))
    scores, same = _pair_arrays(pairs, vectors, metric)
    return metrics.accuracy(scores, same, threshold)


def _pair_arrays(pairs: list[Pair], vectors: dict[str, np.ndarray],
                 metric: str) -> tuple[np.ndarray, np.ndarray]:
    left = np.stack([vectors[p.left] for p in pairs])
    right = np.stack([vectors[p.right] for p in pairs])
    return metrics.pair_scores(left, right, metric), np.array([p.same for p in pairs])


def _people(pairs: list[Pair]) -> set[str]:
    return {path.split("/")[0] for pair in pairs for path in (pair.left, pair.right)}


def evaluate_lfw(embed: EmbedFn, metric: str, calibration: Calibration, lfw: LFW,
                 faces: AlignedFaces, trained_people: set[str], view2: bool = False) -> dict:
    """The report dictionary; `embed` maps aligned crops to embeddings (PyTorch or ONNX)."""
    test_people = set(lfw.view1_test_people)
    test_paths = [r.path for r in faces.records if r.identity in test_people]
    needed = set(test_paths) | {p for pair in lfw.view1_test_pairs for p in (pair.left, pair.right)}
    if view2:
        needed |= {p for fold in lfw.view2_folds for pair in fold for p in (pair.left, pair.right)}
    vectors = embed_paths(embed, faces, sorted(needed))
    return score_lfw(vectors, test_paths, metric, calibration, lfw, trained_people, view2)


def score_lfw(vectors: dict[str, np.ndarray], test_paths: list[str], metric: str,
              calibration: Calibration, lfw: LFW, trained_people: set[str],
              view2: bool = False) -> dict:
    """The report from embeddings by image path: `test_paths` are the DevTest images for all
    pairs; `vectors` also holds every image of the View 1 (and View 2) pairs."""
    scores, same = _pair_arrays(lfw.view1_test_pairs, vectors, metric)
    threshold = calibration.accuracy_threshold
    overlap = len(_people(lfw.view1_test_pairs) & trained_people)
    view1 = {
        "pairs": int(len(same)),
        "accuracy": metrics.accuracy(scores, same, threshold),
        "threshold": threshold, "threshold_source": "held-out training-side people",
        "best_threshold_accuracy": metrics.accuracy(scores, same,
                                                    metrics.best_threshold(scores, same)),
        "best_threshold_note": "oracle: threshold chosen on the test pairs themselves",
        "pairs_auc": metrics.roc_auc(scores[same], scores[~same]),
        "people_trained_on": overlap,
        "warning": (f"CONTAMINATED: {overlap} people of the test pairs were in training"
                    if overlap else None),
    }

    labels = np.array([path.split("/")[0] for path in test_paths])
    genuine, impostor = metrics.all_pair_scores(np.stack([vectors[p] for p in test_paths]),
                                                labels, metric)
    all_pairs = {"images": len(test_paths), **all_pair_figures(genuine, impostor, calibration)}
    report = {"metric": metric, "view1": view1, "devtest_all_pairs": all_pairs,
              "_roc": metrics.roc_curve(genuine, impostor),
              "_tsne": (np.stack([vectors[p] for p in test_paths]), labels)}
    if view2:
        fold_scores, fold_same = zip(*(_pair_arrays(fold, vectors, metric)
                                       for fold in lfw.view2_folds), strict=True)
        mean, std = metrics.kfold_accuracy(list(fold_scores), list(fold_same))
        seen = len(set().union(*map(_people, lfw.view2_folds)) & trained_people)
        report["view2"] = {
            "accuracy_mean": mean, "accuracy_std": std, "people_trained_on": seen,
            "warning": (f"CONTAMINATED: {seen} View 2 people were in training; use View 1"
                        if seen else None),
        }
    return report


def all_pair_figures(genuine: np.ndarray, impostor: np.ndarray,
                     calibration: Calibration) -> dict:
    """Pair counts, AUC, EER, d', TAR at each FAR target and the rates at the calibrated
    threshold, over every pair of a set of held-out images."""
    tar_cal, far_cal = metrics.rates(genuine, impostor, calibration.far_threshold)
    return {
        "genuine_pairs": int(len(genuine)), "impostor_pairs": int(len(impostor)),
        "auc": metrics.roc_auc(genuine, impostor),
        "eer": metrics.equal_error_rate(genuine, impostor),
        "d_prime": metrics.d_prime(genuine, impostor),
        "tar_at_far": {f"{far:g}": metrics.tar_at_far(genuine, impostor, far)
                       for far in FAR_TARGETS},
        "calibrated": {"threshold": calibration.far_threshold,
                       "target_far": calibration.target_far, "tar": tar_cal, "far": far_cal},
    }


def write_report(report: dict, out_dir: Path, title: str, people: str = "DevTest") -> Path:
    """report.json, roc.png and tsne.png into out_dir (report written atomically); `people`
    names the evaluated people in the plots' titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    far, tar = report.pop("_roc")
    figure, axis = plt.subplots(figsize=(5, 4))
    keep = far > 0
    axis.semilogx(far[keep], tar[keep])
    axis.set(xlabel="false accept rate", ylabel="true accept rate", xlim=(1e-5, 1), ylim=(0, 1),
             title=f"{title}: ROC over all {people} pairs")
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(check_output_path(out_dir / "roc.png"), dpi=120)
    plt.close(figure)

    embeddings, labels = report.pop("_tsne")
    _plot_tsne(embeddings, labels, out_dir / "tsne.png", title, people=people)
    path = out_dir / "report.json"
    write_text_atomic(path, json.dumps(report, indent=2))
    return path


def _plot_tsne(embeddings: np.ndarray, labels: np.ndarray, path: Path, title: str,
               identities: int = 20, people: str = "DevTest") -> None:
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    names, counts = np.unique(labels, return_counts=True)
    chosen = names[np.argsort(-counts, kind="stable")[:identities]]
    mask = np.isin(labels, chosen)
    if mask.sum() < 5:
        return
    points = TSNE(n_components=2, perplexity=min(30, mask.sum() - 1), init="pca",
                  random_state=0).fit_transform(embeddings[mask])
    figure, axis = plt.subplots(figsize=(6, 5))
    for index, name in enumerate(chosen):
        selected = labels[mask] == name
        axis.scatter(points[selected, 0], points[selected, 1], s=10, label=name,
                     color=plt.cm.tab20(index % 20))
    axis.set_title(f"{title}: t-SNE of {len(chosen)} {people} people")
    axis.legend(fontsize=5, markerscale=1, ncol=2)
    figure.tight_layout()
    figure.savefig(check_output_path(path), dpi=120)
    plt.close(figure)
