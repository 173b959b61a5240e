"""What a new user sees from `siamese-compare`: LFW View 1 DevTest pairs through the library's
Verifier.compare, at the model's shipped threshold.

Each of the 1,000 pairs (500 same person, 500 different) is compared as the command does
(detect, the dominant face, the quality gate, align, embed, score; for the photos default the
cascade, runtime.cascade, unless --no-cascade); a refused pair (no usable face, a face failing
the quality gate, several faces of similar size) counts as wrong. Also printed: the accuracy over
the pairs that were decided, and the share the cascade's screen decided.

    python tools/eval_compare.py --lfw-root path/to/lfw --model sface [--scores-out s.npz]
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
from siamese.runtime.commands.support import SiameseCommand
from siamese.runtime.errors import ReferenceError
from siamese.runtime.storage.integrity import load_or_create_key
from siamese.runtime.verifier import Verifier
from siamese.train.lfw import LFW


def compare_pairs(verifier: Verifier, image_root: Path,
                  pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Per pair: the score and the decision (NaN when refused), whether the cascade's screen
    decided, and the refusal reason ('' when decided)."""
    scores, decisions = np.full(len(pairs), np.nan), np.full(len(pairs), np.nan)
    screened, reasons = np.zeros(len(pairs), bool), []
    for i, pair in enumerate(pairs):
        try:
            result = verifier.compare(image_root / pair.left, image_root / pair.right)
        except ReferenceError as exc:
            reasons.append(str(exc))
            continue
        scores[i], decisions[i], screened[i] = result.score, result.same_person, result.screened
        reasons.append("")
    return scores, decisions, screened, reasons


@click.command(cls=SiameseCommand)
@click.option("--lfw-root", required=True, type=click.Path(path_type=Path))
@click.option("--model", default=None, help="Packaged model name or ONNX file [default: the "
              "photos default].")
@click.option("--cache-dir", required=True, type=click.Path(path_type=Path),
              help="Reference-embedding cache (and its key) for this evaluation.")
@click.option("--scores-out", type=click.Path(path_type=Path),
              help="Save per-pair scores (NaN: refused) and labels as .npz.")
@click.option("--no-cascade", is_flag=True, help="The model alone, without its cascade.")
def main(lfw_root: Path, model: str | None, cache_dir: Path, scores_out: Path | None,
         no_cascade: bool) -> None:
    """Print right / wrong / refused on LFW View 1 DevTest at the shipped threshold."""
    from siamese.runtime import model_zoo

    lfw = LFW(lfw_root)
    cache_dir.mkdir(parents=True, exist_ok=True)
    verifier = Verifier.from_model(model_zoo.resolve(model, use="photos"), cache_dir=cache_dir,
                                   key=load_or_create_key(cache_dir / "key"),
                                   cascade=not no_cascade)
    pairs = lfw.view1_test_pairs
    started = time.perf_counter()
    scores, decisions, screened, reasons = compare_pairs(verifier, lfw.image_root, pairs)
    same = np.array([p.same for p in pairs])
    decided = ~np.isnan(decisions)
    right = int((decisions == same)[decided].sum())
    refused = int((~decided).sum())
    wrong = len(pairs) - right - refused
    click.echo(f"model {verifier.embedder.path.name} ({verifier.embedder.info.arch}), threshold "
               f"{verifier.threshold:.4f}: {len(pairs)} pairs, right {right}, wrong {wrong}, "
               f"refused {refused}; accuracy (refused count as wrong) "
               f"{100 * right / len(pairs):.2f}%, over decided pairs "
               f"{100 * right / max(1, decided.sum()):.2f}% "
               f"({time.perf_counter() - started:.0f} s)")
    if verifier.screen is not None:
        click.echo(f"  cascade: the {verifier.screen.name} screen decided "
                   f"{int(screened.sum())} of {int(decided.sum())} decided pairs, "
                   f"{verifier.embedder.path.name} the rest")
    for label, mask in (("same person", same), ("different people", ~same)):
        ok = int((decisions == same)[decided & mask].sum())
        click.echo(f"  {label}: right {ok}, wrong {int((decided & mask).sum()) - ok}, refused "
                   f"{int((~decided & mask).sum())}")
    kinds: dict[str, int] = {}
    for reason in filter(None, reasons):
        kind = "quality gate" if "quality gate" in reason else reason.split(" in ")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]):
        click.echo(f"  refused: {kind}: {count}")
    if scores_out:
        np.savez(scores_out, scores=scores, decisions=decisions, screened=screened, same=same,
                 threshold=verifier.threshold)


if __name__ == "__main__":
    main()
