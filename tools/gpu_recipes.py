"""Every training recipe at once on one GPU, sized to a wall-clock budget.

For a lent GPU machine that has torch but neither LFW nor this package installed. It unpacks a
packed face cache (tools/pack_face_cache.py, the training people only), runs a short probe of
every recipe side by side to measure seconds per epoch, gives each recipe as many epochs as fit
the budget (capped at its own), trains them all side by side, and bundles slim checkpoints
(weights, config, calibration, history) into <16 MB parts. Evaluate them on LFW DevTest on the
data machine with `siamese-eval`.

    P=LFW/peopleDevTrain.txt
    python tools/pack_face_cache.py pack CACHE DIR/faces.npz --quality 90 --people $P
    python tools/teacher_embeddings.py CACHE DIR/teacher.npz --people $P
    python tools/teacher_embeddings.py CACHE DIR/morphs.npz --people $P --morphs 30000
    python tools/gpu_recipes.py --carry DIR --out OUTDIR --budget 330
      (DIR holds faces.npz, teacher.npz, morphs.npz and lfw_protocol/*.txt)
    cat OUTDIR/bundle.part.* | tar x -C runs/gpu

The edge model's GPU recipe (issue 17, 6b): SFace's targets of each augmented view, computed on
the GPU as the student trains (train.onnx_teacher), against SFace's targets of the cached crops,
the larger 112-px student (edge-resnet-l) in both. One call of at most 10 minutes on one H200:

    python tools/teacher_embeddings.py CACHE DIR/sface.npz --people $P \
        --teacher runtime/models/sface.onnx
    python tools/gpu_recipes.py --carry DIR --out OUTDIR --budget 330 \
        --only sface-online-l --only sface-cached-l
      (DIR holds faces.npz, sface.npz and lfw_protocol/*.txt; worst case: a 120 s probe, 1.25 x
      the budget, the bundle)
    siamese-eval runs/gpu/sface-online-l/model.pt --lfw-root LFW
    siamese-export runs/gpu/sface-online-l/model.pt --int8 --lfw-root LFW   # parity-gated
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import click
from siamese.runtime.commands.support import SiameseCommand

# name: (siamese-train arguments, most epochs, bring the weights back in fp16: the transfer
# limit is 64 MiB, so only the two likeliest default models come back in fp32)
RECIPES: dict[str, tuple[list[str], int, bool]] = {
    "seed": (["--preset", "seed"], 50, True),
    "seed-tricks": (["--preset", "seed-tricks"], 50, True),
    "edge": (["--preset", "edge"], 120, True),
    "edge-arcface": (["--preset", "edge", "--head", "arcface"], 120, True),
    "distill": (["--preset", "edge-distill", "--distill", "{teacher}"], 400, True),
    "distill-l": (["--preset", "edge-distill", "--arch", "edge-resnet-l",
                   "--distill", "{teacher}"], 400, True),
    "distill-morphs": (["--preset", "edge-distill", "--distill", "{teacher}",
                        "--distill-morphs", "{morphs}"], 400, False),
    "distill-morphs-m": (["--preset", "edge-distill", "--arch", "edge-resnet-m",
                          "--distill", "{teacher}", "--distill-morphs", "{morphs}"], 400, True),
    "distill-morphs-l": (["--preset", "edge-distill", "--arch", "edge-resnet-l",
                          "--distill", "{teacher}", "--distill-morphs", "{morphs}"], 400, False),
    # SFace's targets (the packaged INT8 file run by torch with float activations: mean cosine
    # 0.99967 to the FP32 original) of every augmented view on the GPU, against its targets of
    # the unaugmented crops only (sface.npz), same student at 112 px, same budget
    "sface-online-l": (["--preset", "edge-distill-l", "--distill-online", "{sface}"], 400,
                       True),
    "sface-cached-l": (["--preset", "edge-distill-l", "--distill", "{sface_targets}",
                        "--distill-centre", "none"], 400, True),
}
PROBE_EPOCHS = 3
LAUNCHER = "import sys; from siamese.train.cli import train_main; sys.argv[0] = 'siamese-train'; " \
           "train_main()"


def package_path(repo: Path, work: Path) -> str:
    """A PYTHONPATH under which `import siamese.train` works without installing the package."""
    package = work / "pkg" / "siamese"
    package.mkdir(parents=True, exist_ok=True)
    for name in ("runtime", "train", "export"):
        link = package / name
        if not link.exists():
            link.symlink_to(repo / name)
    return str(work / "pkg")


def launch(names: list[str], epochs: dict[str, int], common: list[str], files: dict[str, str],
           runs: Path, env: dict, limit: float) -> dict[str, float]:
    """Train the recipes side by side; kill any still running after `limit` s. Wall seconds."""
    procs, started = {}, time.perf_counter()
    for name in names:
        args, _, _ = RECIPES[name]
        args = [a.format(**files) for a in args]
        log = open(runs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        procs[name] = (subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, *args, *common, "--epochs", str(epochs[name]),
             "--out", str(runs / name)], stdout=log, stderr=subprocess.STDOUT, env=env), log)
    walls = {}
    while procs:
        for name, (proc, log) in list(procs.items()):
            if proc.poll() is not None or time.perf_counter() - started > limit:
                if proc.poll() is None:
                    proc.kill()
                    print(f"{name}: stopped at the time limit", flush=True)
                proc.wait()
                log.close()
                walls[name] = time.perf_counter() - started
                del procs[name]
        time.sleep(1)
    return walls


def epoch_seconds(run: Path) -> float | None:
    """Seconds per epoch (training and validation) from a probe run's history."""
    last = run / "last.pt"
    if not last.is_file():
        return None
    import torch

    history = torch.load(last, map_location="cpu", weights_only=False)["history"]
    later = history[1:] or history
    return sum(h["seconds"] + h.get("val_seconds", 0.0) for h in later) / len(later)


def slim(run: Path, half: bool) -> Path | None:
    """model.pt: the best checkpoint without optimizer, head and RNG state."""
    from siamese.train.checkpoint import Checkpoint

    best = run / "best.pt"
    if not best.is_file():
        return None
    Checkpoint.load(best).slimmed(half).save(run / "model.pt")
    return run / "model.pt"


@click.command(cls=SiameseCommand)
@click.option("--carry", type=click.Path(exists=True, path_type=Path), required=True,
              help="Folder with faces.npz, teacher.npz, morphs.npz and lfw_protocol/.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--budget", default=330.0, show_default=True, help="Training wall seconds.")
@click.option("--work", type=click.Path(path_type=Path), default=Path("/tmp/gpu_recipes"))
@click.option("--device", default="cuda", show_default=True)
@click.option("--only", multiple=True, type=click.Choice(sorted(RECIPES)))
@click.option("--max-bytes", default=65_000_000, show_default=True,
              help="Most bytes of checkpoints to bring back (larger ones are left out).")
def main(carry: Path, out: Path, budget: float, work: Path, device: str, only: tuple[str, ...],
         max_bytes: int) -> None:
    """Probe, size, train and bundle every recipe."""
    repo = Path(__file__).resolve().parent.parent
    shutil.rmtree(work, ignore_errors=True)
    runs, probes, lfw = work / "runs", work / "probe", work / "lfw"
    for folder in (runs, probes, lfw / "lfw-deepfunneled", out):
        folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=package_path(repo, work), PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1")  # nine processes on 16 cores; the GPU does the work
    subprocess.run([sys.executable, str(repo / "tools" / "pack_face_cache.py"), "unpack",
                    str(carry / "faces.npz"), str(work / "faces")], env=env, check=True)
    for text in (carry / "lfw_protocol").glob("*.txt"):
        shutil.copy(text, lfw)
    files = {"teacher": str(carry.resolve() / "teacher.npz"),
             "morphs": str(carry.resolve() / "morphs.npz"),
             "sface_targets": str(carry.resolve() / "sface.npz"),
             "sface": str(repo / "runtime" / "models" / "sface.onnx")}
    common = ["--lfw-root", str(lfw), "--faces", str(work / "faces"), "--device", device,
              "--quiet"]
    names = list(only or RECIPES)
    t0 = time.perf_counter()
    launch(names, dict.fromkeys(names, PROBE_EPOCHS), common, files, probes, env, 120)
    epochs = {}
    for name in names:
        seconds = epoch_seconds(probes / name)
        if seconds is None:
            print(f"{name}: probe failed:\n" + (probes / f"{name}.log").read_text()[-2000:])
            continue
        epochs[name] = max(1, min(RECIPES[name][1], int(budget / (1.15 * seconds))))
        print(f"{name}: {seconds:.2f} s/epoch side by side -> {epochs[name]} epochs", flush=True)
    print(f"probe: {time.perf_counter() - t0:.0f} s", flush=True)
    walls = launch(list(epochs), epochs, common, files, runs, env, budget * 1.25)
    summary = {}
    for name in epochs:
        checkpoint = slim(runs / name, RECIPES[name][2])
        log_tail = (runs / f"{name}.log").read_text()[-600:]
        summary[name] = {"epochs": epochs[name], "wall_s": round(walls[name], 1),
                         "log_tail": log_tail, "model": checkpoint is not None}
        print(f"== {name} ({walls[name]:.0f} s)\n{log_tail}", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    total, bundle = 0, work / "bundle.tar"
    with tarfile.open(bundle, "w") as tar:
        for name in sorted(names, key=lambda n: RECIPES[n][2]):  # the fp16 (seed) ones last
            checkpoint = runs / name / "model.pt"
            if not checkpoint.is_file():
                continue
            if total + checkpoint.stat().st_size > max_bytes:
                print(f"{name}: checkpoint left out (transfer limit)")
                continue
            total += checkpoint.stat().st_size
            tar.add(checkpoint, f"{name}/model.pt")
            tar.add(runs / f"{name}.log", f"{name}/train.log")
    part_size = 15 * 2**20
    with open(bundle, "rb") as source:
        for index, chunk in enumerate(iter(lambda: source.read(part_size), b"")):
            (out / f"bundle.part.{index:02d}").write_bytes(chunk)
    print(f"bundle: {total / 1e6:.1f} MB of checkpoints; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
