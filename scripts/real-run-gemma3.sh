#!/usr/bin/env bash
# The real K-quant model end to end (issue 20, item 9): Gemma 3 270M Q4_K_M from
# scripts/fetch-gemma3.sh, and the 300 real pairs from scripts/fetch-pairs.sh.
#   1. score a text (BOS first) and continue it (this base model's file has no chat template, so
#      --chat would fall back to ChatML, which Gemma never saw);
#   2. a few SFT steps, then a few GDPO steps with LoRA r 16 (binary labels from the file);
#   3. the adapter exported in PEFT's layout, scored back through --adapter.
# Outputs go to .cache/real-gemma3/. Prints one line per stage with the time.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SOFTALIGN:-target/release/softalign}
M=.cache/models/gemma-3-270m-q4_k_m.gguf
D=${OUT:-.cache/real-gemma3}
STEPS=${STEPS:-3}
mkdir -p "$D"
stage() { echo "real-run-gemma3: $(date -u +%H:%M:%S) $*" >&2; }

python3 - "$D" <<'PY'
import json, sys
out = sys.argv[1]
pairs = json.load(open(".cache/data/dpo_en_demo.json"))
json.dump(pairs[:40], open(f"{out}/pairs.json", "w"))
with open(f"{out}/sft.jsonl", "w") as f:
    for p in pairs[:40]:
        f.write(json.dumps({"prompt": p["conversations"][-1]["value"][:400],
                            "response": p["chosen"]["value"][:400]}) + "\n")
with open(f"{out}/probes.jsonl", "w") as f:
    for p in pairs[-3:]:
        f.write(json.dumps({"text": (p["conversations"][-1]["value"] + "\n" + p["chosen"]["value"])[:400]}) + "\n")
PY

stage "1. score and continue"
$S score --model $M --text "The capital of France is Paris. The capital of Italy is" --json > "$D/score.json"
$S generate --model $M --max-tokens 16 --prompt "The capital of France is Paris. The capital of Italy is"
echo

stage "2a. SFT, $STEPS steps"
$S sft --model $M --data "$D/sft.jsonl" --out "$D/sft" --overwrite --max-steps "$STEPS" --batch-size 2 \
  --max-length 192 --learning-rate 1e-5 --no-progress

stage "2b. GDPO + LoRA r 16, $STEPS steps"
$S align --model $M --data "$D/pairs.json" --out "$D/lora" --overwrite --loss gdpo --beta 0.3 \
  --lora-r 16 --lora-alpha 32 --max-steps "$STEPS" --batch-size 2 --learning-rate 3e-4 \
  --max-length 192 --max-prompt-length 96 --no-progress

stage "3. the adapter, scored back"
ls -la "$D/lora/adapter"
$S score --model $M --adapter "$D/lora/adapter" --file "$D/probes.jsonl" --json > "$D/score_adapter.json"
$S score --model $M --file "$D/probes.jsonl" --json > "$D/score_base.json"
stage "done"
