#!/usr/bin/env bash
# Every recipe at once on a GPU machine that has torch but neither LFW nor this package
# installed: seed preset, seed tricks, margin table, edge, edge-distill, edge-m-distill; then
# evaluation and slim checkpoints split into <16 MB parts under OUTDIR.
#   python tools/pack_face_cache.py pack CACHE_DIR faces.npz          (on the data machine)
#   python tools/teacher_embeddings.py CACHE_DIR teacher.npz --people LFW/peopleDevTrain.txt
#   bash tools/gpu_recipes.sh OUTDIR faces.npz $PWD/teacher.npz LFW_PROTOCOL_DIR [EPOCH_DIVISOR]
# (prepared for a lent H200 on 2026-11-28, which got no machine: dry-run on a CPU with the test fixture only)
set -u
export PYTHONUNBUFFERED=1
OUTDIR=$1; FACES_NPZ=$2; TEACHER=$3; PROTO=$4; DIV=${5:-1}
R=/tmp/gpuruns; rm -rf $R /tmp/faces /tmp/lfwp; mkdir -p $R $OUTDIR
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
rm -rf /tmp/pkg && mkdir -p /tmp/pkg/siamese
for d in runtime train export; do ln -s $PWD/$d /tmp/pkg/siamese/$d; done
export PYTHONPATH=/tmp/pkg:$PWD
echo 'from siamese.train.cli import train_main; train_main()' > /tmp/pkg/strain.py
echo 'from siamese.train.cli import eval_main; eval_main()' > /tmp/pkg/seval.py
$PY tools/pack_face_cache.py unpack $FACES_NPZ /tmp/faces
mkdir -p /tmp/lfwp/lfw-deepfunneled && cp $PROTO/*.txt /tmp/lfwp/
DEV=${DEV:-cuda}
C="--lfw-root /tmp/lfwp --faces /tmp/faces --quiet --device $DEV"
e() { echo $(( $1 / DIV > 0 ? $1 / DIV : 1 )); }
t0=$(date +%s)
TT=${TT:-360}
timeout $TT $PY /tmp/pkg/strain.py --preset seed $C --epochs $(e 50) --warmup-epochs $(e 5) --out $R/seed > $R/seed.log 2>&1 &
timeout $TT $PY /tmp/pkg/strain.py --preset seed-tricks $C --epochs $(e 50) --warmup-epochs $(e 5) --out $R/seed-tricks > $R/seed-tricks.log 2>&1 &
timeout $TT $PY /tmp/pkg/strain.py --preset edge $C --epochs $(e 80) --out $R/edge > $R/edge.log 2>&1 &
timeout $TT $PY /tmp/pkg/strain.py --preset edge-distill $C --distill $TEACHER --epochs $(e 80) --out $R/edge-distill > $R/edge-distill.log 2>&1 &
timeout $TT $PY /tmp/pkg/strain.py --preset edge $C --distill $TEACHER --epochs $(e 80) --out $R/edge-cosface-distill > $R/edge-cosface-distill.log 2>&1 &
timeout $TT $PY /tmp/pkg/strain.py --preset edge-distill $C --arch edge-resnet-m --distill $TEACHER --epochs $(e 80) --out $R/edge-m-distill > $R/edge-m-distill.log 2>&1 &
timeout $TT $PY tools/margin_table.py --lfw-root /tmp/lfwp --faces /tmp/faces --device $DEV --epochs $(e 50) --runs $R/margins --out $R/margin_table.md > $R/margins.log 2>&1 &
wait
echo "training wall: $(( $(date +%s) - t0 )) s"
for run in seed seed-tricks edge edge-distill edge-cosface-distill edge-m-distill; do
  $PY /tmp/pkg/seval.py $R/$run/best.pt --lfw-root /tmp/lfwp --faces /tmp/faces --device $DEV --quiet > $R/$run/eval.log 2>&1
  echo "== $run"; tail -4 $R/$run.log; cat $R/$run/eval.log
done
cat $R/margins.log $R/margin_table.md
# slim the checkpoints (drop optimizer, head and RNG state) and bring them back in <16 MB parts
$PY - <<'PY'
import torch, pathlib
for p in pathlib.Path("/tmp/gpuruns").glob("*/best.pt"):
    s = torch.load(p, weights_only=False)
    for k in ("optimizer", "head", "rng", "hard_triplets"):
        s.pop(k, None)
    torch.save(s, p.with_name("model.pt"))
PY
cd $R && tar cf /tmp/bundle.tar --exclude='*/last.pt' --exclude='*/best.pt' --exclude='margins/*' --exclude='seed-tricks/model.pt' . && cd - >/dev/null
split -b 15M -d /tmp/bundle.tar $OUTDIR/bundle.part.
ls -la $OUTDIR
