#!/usr/bin/env bash
# Reproduce the packaged default model (runtime/models/siamese_edge*.onnx) step by step.
#   bash tools/train_default_model.sh path/to/lfw [EPOCHS]
# Times measured on the project's 2-core CPU (2026-11-28), for orientation:
#   1. align LFW (13,233 images)                           42 s
#   2. dlib teacher descriptors, DevTrain (9,525 images)    8 min (needs the 'teacher' extra)
#   3. train edge-distill, 25 epochs, one thread          31 min (1,874 s)
#   4. evaluate on LFW View 1 and all DevTest pairs         1 min
#   5. export FP32/FP16/INT8/TorchScript with parity gates  2 min
set -euo pipefail
LFW=${1:?usage: train_default_model.sh LFW_ROOT [EPOCHS]}
EPOCHS=${2:-25}
RUN=runs/default-model
step() { echo "== $(date +%H:%M:%S) $*"; }

step "1. align every LFW image once (aligned-face cache)"
time siamese-data prepare --lfw-root "$LFW" --quiet
CACHE=$(siamese-data prepare --lfw-root "$LFW" --quiet | sed -n 's/^cache: //p')

step "2. teacher targets: dlib's ResNet descriptor of every DevTrain face (training only)"
time python tools/teacher_embeddings.py "$CACHE" "$RUN-teacher.npz" --people "$LFW/peopleDevTrain.txt"

step "3. train: edge-resnet distilled from the teacher; 10% of DevTrain people held out"
time siamese-train --preset edge-distill --distill "$RUN-teacher.npz" --lfw-root "$LFW" \
    --epochs "$EPOCHS" --out "$RUN" --quiet

step "4. evaluate: View 1 at the held-out threshold; all pairs among DevTest images"
time siamese-eval "$RUN/best.pt" --lfw-root "$LFW" --view2 --quiet

step "5. export with parity gates, then install into the runtime package"
time siamese-export "$RUN/best.pt" --fp16 --int8 --torchscript --lfw-root "$LFW" --out "exports/default-model"
cp exports/default-model/model.onnx runtime/models/siamese_edge.onnx
cp exports/default-model/model.int8.onnx runtime/models/siamese_edge.int8.onnx
step "done: runtime/models/siamese_edge.onnx and siamese_edge.int8.onnx"
