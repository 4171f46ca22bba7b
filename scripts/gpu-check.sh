#!/usr/bin/env bash
# softalign's CUDA path beside the CPU: the optimizer kernels against the device's bandwidth probe,
# scores of the tiny families on both devices, greedy generation on both, and a training step.
#   SOFTALIGN=path/to/softalign (built with --features cuda) GOLDEN=../shared/golden OUT=dir scripts/gpu-check.sh
# Needs the NVIDIA driver and CUDA's nvrtc (found anywhere under /). Writes its JSON into $OUT.
set -u
S=${SOFTALIGN:-target/release/softalign}
G=${GOLDEN:-../shared/golden}
OUT=${OUT:-/tmp/softalign-gpu-check}
mkdir -p "$OUT"
export OUT
lib=$(dirname "$(find / -name 'libnvrtc.so*' -not -path '/proc/*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}"
echo "nvrtc from $lib"; nvidia-smi -L
T="Soft preference labels rescale rotary frequencies in long contexts."
timeout 120 $S bench optim --device cuda --params 50000000 --json > $OUT/bench_optim_cuda.json 2> $OUT/bench_optim.err; echo "bench optim rc=$?"; tail -3 $OUT/bench_optim.err; cat $OUT/bench_optim_cuda.json
for m in hf-tiny-llama31 hf-tiny-gemma3 hf-tiny-phi3; do
  for d in cpu cuda; do timeout 90 $S score --device $d --model $G/$m --text "$T" --json > $OUT/score_${m}_$d.json 2>>$OUT/score.err; echo "score $m $d rc=$?"; done
done
tail -5 $OUT/score.err
python3 - <<'PY'
import json, os
out = os.environ["OUT"]
for m in ["hf-tiny-llama31", "hf-tiny-gemma3", "hf-tiny-phi3"]:
    try:
        a = json.load(open(f"{out}/score_{m}_cpu.json"))["texts"][0]["token_logps"]
        b = json.load(open(f"{out}/score_{m}_cuda.json"))["texts"][0]["token_logps"]
        print(m, "max |cpu - cuda| log p", max(abs(x - y) for x, y in zip(a, b)))
    except Exception as e:
        print(m, "no comparison:", e)
PY
for d in cpu cuda; do echo "generate $d:"; timeout 90 $S generate --device $d --model $G/hf-tiny-gemma3 --prompt "$T" --max-tokens 12 | od -c | head -3; done
timeout 200 $S bench step --device cuda --steps 2 --json > $OUT/bench_step_cuda.json 2> $OUT/bench_step.err; echo "bench step rc=$?"; tail -3 $OUT/bench_step.err; cat $OUT/bench_step_cuda.json
