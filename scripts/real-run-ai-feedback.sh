#!/bin/bash
# The real AI-feedback run (issue 7): SmolLM2-135M-Instruct labels the first 100 pairs of
# dpo_en_demo.json, DPO (binarized), cDPO and GDPO each align SmolLM2 on them for 8 steps, and
# `softalign eval` judges each against the base model on 12 held-out prompts (pairs 281-292).
# Needs scripts/fetch-smollm2.sh and scripts/fetch-pairs.sh first; about 45 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
S=target/release/softalign
M=.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
D=.cache/real
mkdir -p $D
python3 -c "import json; d=json.load(open('.cache/data/dpo_en_demo.json')); json.dump(d[280:300], open('$D/heldout.json','w'))"
$S label --judge $M --data .cache/data/dpo_en_demo.json --out $D/labels.jsonl --limit 100 \
  --max-context-tokens 128 --max-output-tokens 128
for loss in dpo cdpo gdpo; do
  $S align --model $M --data $D/labels.jsonl --out $D/runs2/$loss --loss $loss \
    --max-steps 8 --batch-size 2 --learning-rate 1e-4 --warmup-ratio 0.1 \
    --max-length 256 --max-prompt-length 128 --heldout-fraction 0
done
for loss in dpo cdpo gdpo; do
  beta=0.1; [ $loss = gdpo ] && beta=0.3
  $S eval --model $D/runs2/$loss/model --versus $M --judge $M --data $D/heldout.json --limit 12 \
    --max-tokens 48 --max-prompt-tokens 128 --max-context-tokens 128 --max-output-tokens 128 \
    --reference $M --beta $beta --max-length 256 --out $D/evals2/$loss
done
