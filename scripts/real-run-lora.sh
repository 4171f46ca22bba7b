#!/bin/bash
# The real LoRA run (issue 13, item 7), end to end on 2 CPU cores:
#   1. SmolLM2-135M-Instruct, as judge, labels the pairs of dpo_en_demo.json (both orders): soft
#      labels, since GDPO equals DPO on binary ones (all 300 by default, about 21 minutes here;
#      LABEL_PAIRS=N labels only the first N, and the last 20 of them are held out);
#   2. GDPO (β 0.3) trains LoRA adapters (r 16, α 32, every projection) on the frozen SmolLM2 with
#      the other labelled pairs for one epoch (5% of their prompts held out for the run's own
#      evaluation); the adapter goes to OUT/adapter in PEFT's layout and, with --merge, the
#      merged model to OUT/model;
#   3. `generate --adapter` loads the adapter back onto the base and generates;
#   4. `score` shows that base + adapter computes what the trained (merged) model computes, and
#      not what the base computes; `eval --adapter` judges its greedy answers to the held-out
#      prompts against the base model's, with the same judge.
# Needs scripts/fetch-smollm2.sh and scripts/fetch-pairs.sh first. Outputs go to .cache/real-lora/
# (OUT overrides it). The labelling resumes; rerunning the script after an interruption is safe.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SOFTALIGN:-target/release/softalign}
M=.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
D=${OUT:-.cache/real-lora}
PAIRS=${LABEL_PAIRS:-300}
LR=${LEARNING_RATE:-3e-4}
PROMPT=${PROMPT:-"Give me three tips for writing a clear email."}
mkdir -p "$D"
stage() { echo "real-run-lora: $(date -u +%H:%M:%S) $*" >&2; }

python3 - "$D" "$PAIRS" <<'PY'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
pairs = json.load(open(".cache/data/dpo_en_demo.json"))[:n]
json.dump(pairs[-20:], open(f"{out}/heldout.json", "w"))
# Score probes: the first five held-out exchanges as plain text.
with open(f"{out}/probes.jsonl", "w") as f:
    for p in pairs[-20:][:5]:
        text = p["conversations"][-1]["value"] + "\n" + p["chosen"]["value"]
        f.write(json.dumps({"text": text[:600]}) + "\n")
PY

stage "1. labelling $PAIRS pairs with the judge"
$S label --judge $M --data .cache/data/dpo_en_demo.json --limit "$PAIRS" --out "$D/labels.jsonl" \
  --max-context-tokens 128 --max-output-tokens 128
head -n $((PAIRS - 20)) "$D/labels.jsonl" > "$D/train.jsonl"

stage "2. GDPO + LoRA r 16 on $((PAIRS - 20)) labelled pairs"
$S align --model $M --data "$D/train.jsonl" --out "$D/run" --overwrite --loss gdpo --beta 0.3 \
  --lora-r 16 --lora-alpha 32 --merge --epochs 1 --batch-size 2 --grad-accum 2 \
  --learning-rate "$LR" --warmup-ratio 0.1 --max-length 256 --max-prompt-length 128 \
  --heldout-fraction 0.05 --no-progress

stage "3. generating with the adapter, and without"
echo "--- base + adapter:"
$S generate --model $M --adapter "$D/run/adapter" --chat --max-tokens 64 --prompt "$PROMPT"
echo
echo "--- base:"
$S generate --model $M --chat --max-tokens 64 --prompt "$PROMPT"
echo

stage "4. scoring the probes: base + adapter, the merged model, the base"
$S score --model $M --adapter "$D/run/adapter" --file "$D/probes.jsonl" --json > "$D/score_adapter.json"
$S score --model "$D/run/model" --file "$D/probes.jsonl" --json > "$D/score_merged.json"
$S score --model $M --file "$D/probes.jsonl" --json > "$D/score_base.json"
python3 - "$D" <<'PY'
import json, sys
d = sys.argv[1]
load = lambda name: json.load(open(f"{d}/score_{name}.json"))["texts"]
adapter, merged, base = load("adapter"), load("merged"), load("base")
for a, m, b in zip(adapter, merged, base):
    assert a["input_ids"] == m["input_ids"] == b["input_ids"]
worst = lambda x, y: max(abs(p - q) for s, t in zip(x, y) for p, q in zip(s["token_logps"], t["token_logps"]))
print("sum log p per probe (adapter / merged / base):")
for a, m, b in zip(adapter, merged, base):
    print(f"  {a['sum_logp']:.4f} / {m['sum_logp']:.4f} / {b['sum_logp']:.4f}  ({a['tokens']} tokens)")
print(f"max |token log p|, adapter vs merged: {worst(adapter, merged):.2e}; adapter vs base: {worst(adapter, base):.2e}")
PY

stage "5. judging base + adapter against the base on the 20 held-out prompts"
$S eval --model $M --adapter "$D/run/adapter" --versus $M --judge $M --data "$D/heldout.json" \
  --max-tokens 48 --max-prompt-tokens 128 --max-context-tokens 128 --max-output-tokens 128 \
  --reference $M --beta 0.3 --max-length 256 --out "$D/eval" --no-progress
stage "done"
