#!/bin/sh
# A "training script" in plain shell that never imports tunelab: it reads its parameters from the
# environment (TUNELAB_PARAM_<NAME>), prints text lines that sweep-shell.yaml's metrics_regex reads,
# and is stopped by SIGTERM when the pruner says so (the trap is only there to say goodbye).
lr=${TUNELAB_PARAM_LR:-0.1}
decay=${TUNELAB_PARAM_DECAY:-0.5}
trap 'echo "stopped by the sweep at epoch $epoch" >&2; exit 143' TERM
epoch=1
while [ "$epoch" -le 9 ]; do
    loss=$(awk -v lr="$lr" -v d="$decay" -v e="$epoch" \
        'BEGIN { x = log(lr) / log(10) + 2; print x * x + d / e + 0.05 }')
    echo "epoch $epoch val_loss=$loss"
    epoch=$((epoch + 1))
    sleep 0.05
done
