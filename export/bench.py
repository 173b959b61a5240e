"""`siamese-bench`: size, latency per face, throughput and LFW View 1 accuracy per model file.

One table, one row per file and engine (runtime.engines: onnxruntime, and on a CPU also OpenCV's
DNN engine where it loads the file), in the spirit of ultralytics' benchmark mode. Latency is the
median of repeated runs after warm-up; the provider and thread count are stated. `--record`
also writes the fastest engine whose embeddings agree with onnxruntime's into the file's
metadata (`engine`; the fingerprint does not change).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from siamese.runtime.commands.support import SiameseCommand
from siamese.runtime.embedder import Embedder
from siamese.runtime.engines import ENGINES, ONNXRUNTIME, gpu_present
from siamese.runtime.errors import ModelError

PARITY_COSINE = 0.999  # an engine's embeddings against onnxruntime's, per face, at least


@dataclass
class BenchRow:
    name: str
    arch: str
    variant: str
    size_mb: float
    provider: str
    ms_per_face: float  # batch 1
    faces_per_s: float  # batch 32
    lfw_accuracy: float | None
    tar_at_far: float | None = None  # TAR at FAR 1e-3 over every pair of DevTest images
    engine: str = ONNXRUNTIME
    min_cosine_vs_onnxruntime: float | None = None  # the engine's parity on the bench inputs


def time_runs(run, repeats: int, warmup: int = 5) -> float:
    """Median seconds of `run()` after warm-up."""
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def bench_model(path: Path, providers: list[str] | None, threads: int, repeats: int,
                lfw_eval=None, engine: str | None = None) -> BenchRow:
    embedder = Embedder(path, providers, threads=threads, batch_size=32, engine=engine)
    shape = embedder.info.preprocess.input_shape
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, *shape)).astype(np.float32)
    batch = rng.standard_normal((32, *shape)).astype(np.float32)
    single = time_runs(lambda: embedder.run(one), repeats)
    batched = time_runs(lambda: embedder.run(batch), max(5, repeats // 4))
    accuracy, tar = lfw_eval(embedder) if lfw_eval else (None, None)
    parity = None
    if embedder.engine.name != ONNXRUNTIME:
        reference = Embedder(path, threads=threads, engine=ONNXRUNTIME).run(batch)
        parity = float((embedder.run(batch) * reference).sum(axis=1).min())
    return BenchRow(path.name, embedder.info.arch, embedder.info.variant,
                    path.stat().st_size / 1e6,
                    embedder.providers[0].replace("ExecutionProvider", ""), 1e3 * single,
                    32 / batched, accuracy, tar, embedder.engine.name, parity)


def bench_candidates(path: Path, providers: list[str] | None, threads: int, repeats: int,
                     lfw_eval=None) -> tuple[list[BenchRow], list[str]]:
    """A row per engine that loads `path` (only onnxruntime with named providers or a GPU),
    and a line for each engine that cannot."""
    engines = (ONNXRUNTIME,) if providers or gpu_present() else ENGINES
    rows, refused = [], []
    for engine in engines:
        try:
            rows.append(bench_model(path, providers, threads, repeats, lfw_eval, engine))
        except ModelError as exc:
            refused.append(f"{path.name}, {engine}: {exc}")
    return rows, refused


def fastest_engine(rows: list[BenchRow]) -> str:
    """The engine of the fastest row whose embeddings agree with onnxruntime's."""
    agreeing = [r for r in rows if r.min_cosine_vs_onnxruntime is None
                or r.min_cosine_vs_onnxruntime >= PARITY_COSINE]
    return min(agreeing, key=lambda r: r.ms_per_face).engine


TAR_FAR = 1e-3


def lfw_view1(lfw_root: Path, cache_dir: Path | None):
    """A function giving an embedder's (View 1 accuracy at its metadata's accuracy threshold,
    TAR at FAR 1e-3 over every pair among the DevTest images)."""
    from siamese.train import face_cache, metrics
    from siamese.train.evaluate import pair_accuracy
    from siamese.train.lfw import LFW

    lfw = LFW(lfw_root)
    faces, _ = face_cache.prepare("lfw", lfw.image_root, lfw.images, cache_dir, progress=False)
    pairs = lfw.view1_test_pairs
    crops = {p: faces.crop(p) for pair in pairs for p in (pair.left, pair.right)}
    test = faces.select(set(lfw.view1_test_people))
    test_crops = np.stack([faces.crop(r.path) for r in test])
    labels = np.unique([r.identity for r in test], return_inverse=True)[1]

    def evaluate(embedder: Embedder) -> tuple[float, float]:
        threshold = embedder.info.accuracy_threshold
        if threshold is None:
            raise ModelError(f"{embedder.path} has no accuracy threshold in its metadata")
        view1 = pair_accuracy(embedder.embed, crops, pairs, embedder.info.metric, threshold)
        genuine, impostor = metrics.all_pair_scores(embedder.embed(test_crops), labels,
                                                    embedder.info.metric)
        return view1, metrics.tar_at_far(genuine, impostor, TAR_FAR)

    return evaluate


def format_rows(rows: list[BenchRow], threads: int, baseline: int = 0) -> str:
    """The table; each row's ms per face is divided by row `baseline`'s (same run)."""
    base = rows[baseline]
    header = (f"{'file':<28} {'arch':<16} {'variant':<8} {'size MB':>8} {'engine':>11} "
              f"{'provider':>9} "
              f"{'ms/face b1':>11} {'vs base':>9} {'faces/s b32':>12} {'LFW View 1':>10} "
              f"{'TAR@1e-3':>9}")
    lines = [header, "-" * len(header)]
    for r in rows:
        acc = f"{100 * r.lfw_accuracy:.2f}%" if r.lfw_accuracy is not None else "-"
        ratio = f"{r.ms_per_face / base.ms_per_face:.2f}x"
        tar = f"{100 * r.tar_at_far:.2f}%" if r.tar_at_far is not None else "-"
        lines.append(f"{r.name:<28} {r.arch[:16]:<16} {r.variant:<8} {r.size_mb:>8.2f} "
                     f"{r.engine:>11} {r.provider[:9]:>9} {r.ms_per_face:>11.2f} {ratio:>9} "
                     f"{r.faces_per_s:>12.0f} "
                     f"{acc:>10} {tar:>9}")
    lines.append(f"vs base: this row's ms per face over the baseline's, {base.name} "
                 f"(--baseline; measured in this run).")
    lines.append(f"threads: {threads or f'auto ({os.cpu_count()} cores)'}; "
                 "latency: median after warm-up. FP16 is a GPU artefact: the CPU provider "
                 "inserts casts, so it gains nothing over FP32 there and often runs slower.")
    return "\n".join(lines)


@click.command(cls=SiameseCommand)
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@click.option("--lfw-root", type=click.Path(path_type=Path), envvar="SIAMESE_LFW_ROOT",
              help="Also measure LFW View 1 accuracy and TAR at FAR 1e-3.")
@click.option("--cache-dir", type=click.Path(path_type=Path))
@click.option("--providers", help="Comma-separated onnxruntime providers [default: CUDA if "
              "available, else CPU].")
@click.option("--threads", default=0, show_default=True, help="0: onnxruntime's default.")
@click.option("--repeats", default=100, show_default=True)
@click.option("--baseline", help="The row ratios are taken against: a file name or path among "
              "MODELS [default: the first model given; in a folder, its FP32 model.onnx].")
@click.option("--record", is_flag=True, help="Write each file's figures (ms per face at these "
              "threads, faces/s, LFW View 1, TAR at FAR 1e-3) into its ONNX metadata, where "
              "siamese-models reads them (the file, and so its fingerprint, changes).")
def main(models, lfw_root, cache_dir, providers, threads, repeats, baseline, record):
    """Benchmark MODELS (packaged model names, files, or export folders: every .onnx inside)
    [default: the packaged models]."""
    from siamese.runtime import model_zoo

    # the packaged embedding models by name (the models folder also holds the detector and
    # the liveness models, which are not embedders)
    models = models or tuple(m.name for m in model_zoo.installed())
    paths = []
    for item in models:
        item = model_zoo.resolve(item)
        if item.is_dir():
            found = sorted(p for p in item.glob("*.onnx") if not p.name.startswith("face_det"))
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            raise ModelError(f"no such model file or folder: {item}")
    if not paths:
        raise ModelError("no embedding models to benchmark")
    evaluate = lfw_view1(lfw_root, cache_dir) if lfw_root else None
    chosen = [p.strip() for p in providers.split(",")] if providers else None
    base = baseline_index(paths, baseline, Path(models[0]).is_dir())
    if record and threads < 1:
        raise click.UsageError("--record needs --threads N (the figures name it)")
    candidates = [bench_candidates(path, chosen, threads, repeats, evaluate) for path in paths]
    for path, (found, refused) in zip(paths, candidates, strict=True):
        if not found:
            raise ModelError(f"no engine runs {path.name}: {'; '.join(refused)}")
    rows = [row for found, _ in candidates for row in found]
    base = rows.index(candidates[base][0][0])
    click.echo(format_rows(rows, threads, base))
    for _, refused in candidates:
        for line in refused:
            click.echo(f"not run: {line}")
    for path, (found, _) in zip(paths, candidates, strict=True) if record else ():
        engine = fastest_engine(found)
        record_figures(path, next(r for r in found if r.engine == engine), threads)


def baseline_index(paths: list[Path], baseline: str | None, first_folder: bool = False) -> int:
    """The index of the named baseline (a path or a file name); without one the first model
    given, or when that was a folder its FP32 model.onnx / siamese_edge.onnx."""
    if baseline is None:
        fp32 = [i for i, p in enumerate(paths) if first_folder and p.parent == paths[0].parent
                and p.name in ("model.onnx", "siamese_edge.onnx")]
        return fp32[0] if fp32 else 0
    for index, path in enumerate(paths):
        if Path(baseline) == path or baseline == path.name \
                or Path(baseline).resolve() == path.resolve():
            return index
    raise ModelError(f"--baseline {baseline} is not among the models benchmarked: "
                     + ", ".join(p.name for p in paths))


def record_figures(path: Path, row: BenchRow, threads: int) -> None:
    """Merge `row`'s measured figures into the file's `measured` metadata."""
    import datetime
    from dataclasses import replace

    import onnx
    from siamese.export.onnx_export import save_atomic, write_metadata

    model = onnx.load(str(path))
    info = Embedder(path).info
    figures = {"ms_per_face": row.ms_per_face, "threads": threads,
               "faces_per_s_batch32": row.faces_per_s, "provider": row.provider,
               "lfw_view1": row.lfw_accuracy, f"tar_at_far_{TAR_FAR:g}": row.tar_at_far,
               "measured_on": datetime.date.today().isoformat(),
               "cpu_cores": os.cpu_count() or 0}
    figures = {k: v for k, v in figures.items() if v is not None}  # LFW only with --lfw-root
    write_metadata(model, replace(info, measured={**(info.measured or {}), **figures},
                                  engine=row.engine))
    save_atomic(model, path)
