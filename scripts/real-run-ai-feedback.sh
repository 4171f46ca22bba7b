#!/bin/bash
# The real AI-feedback run (issue 7), end to end on 2 CPU cores (about 45 minutes):
#   1. SmolLM2-135M-Instruct, as judge, labels all 300 pairs of dpo_en_demo.json (both orders);
#   2. DPO (binarized), cDPO and GDPO each align SmolLM2 on the first 280 labelled pairs for the
#      same small budget (16 steps of 2 pairs, learning rate 1e-4);
#   3. `softalign eval` judges each aligned model against the base model on the 20 held-out
#      prompts (pairs 281-300), and scores its implicit reward on those pairs' human labels.
# Needs scripts/fetch-smollm2.sh and scripts/fetch-pairs.sh first. Outputs go to .cache/real/.
# Every step resumes or overwrites: rerunning the script after an interruption is safe.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SOFTALIGN:-target/release/softalign}
M=.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
D=.cache/real
STEPS=${STEPS:-16}
mkdir -p "$D"
python3 - "$D" <<'PY'
import json, sys
pairs = json.load(open(".cache/data/dpo_en_demo.json"))
json.dump(pairs[280:300], open(f"{sys.argv[1]}/heldout.json", "w"))
PY
$S label --judge $M --data .cache/data/dpo_en_demo.json --out $D/labels.jsonl \
  --max-context-tokens 128 --max-output-tokens 128
head -n 280 $D/labels.jsonl > $D/train.jsonl
for loss in dpo cdpo gdpo; do
  $S align --model $M --data $D/train.jsonl --out $D/runs/$loss --loss $loss \
    --max-steps "$STEPS" --batch-size 2 --learning-rate 1e-4 --warmup-ratio 0.1 \
    --max-length 256 --max-prompt-length 128 --heldout-fraction 0
done
for loss in dpo cdpo gdpo; do
  beta=0.1; [ $loss = gdpo ] && beta=0.3
  $S eval --model $D/runs/$loss/model --versus $M --judge $M --data $D/heldout.json \
    --max-tokens 48 --max-prompt-tokens 128 --max-context-tokens 128 --max-output-tokens 128 \
    --reference $M --beta $beta --max-length 256 --out $D/evals/$loss
done
