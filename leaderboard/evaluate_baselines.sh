#!/usr/bin/env bash
# Re-create the baseline evaluations in leaderboard/evaluations/ (bicubic and RTSRN, x2 and x3,
# on the held-out Set5, Set14 and Urban100_10) with the project's own commands:
#   bash leaderboard/evaluate_baselines.sh [EVAL_DIR] [-- extra evaluate flags]
# EVAL_DIR defaults to ../shared/data/eval. On a CPU the runtime protocol is shortened
# (--repeat 5 --warmup 1); on a GPU drop that for the challenge's 50 + 244 passes.
set -euo pipefail
cd "$(dirname "$0")/.."
eval_dir=${1:-../shared/data/eval}
shift || true
[ "${1:-}" = "--" ] && shift
protocol=("$@")
[ ${#protocol[@]} -eq 0 ] && protocol=(--repeat 5 --warmup 1)
work=data/baselines  # prepared LR/GT pairs, kept (data/ is ignored by git)
mkdir -p leaderboard/evaluations
for scale in 2 3; do
  for set in Set5 Set14 Urban100_10; do
    python -m rtsr -q prepare-data --image-dir "$eval_dir/$set" --downsample-factor "$scale" \
      --lr-out-dir "$work/$set/lr_x$scale" --gt-out-dir "$work/$set/gt_x$scale" > /dev/null
    for model in bicubic rtsrn; do
      python -m rtsr -q evaluate --model "$model-x$scale" --dataset "$set" \
        --lr-dir "$work/$set/lr_x$scale" --gt-dir "$work/$set/gt_x$scale" \
        --out "leaderboard/evaluations/$model-x${scale}_$set.json" "${protocol[@]}"
    done
  done
done
