"""Checks that transformers and peft load what softalign writes, and compute what softalign
computes: a Hugging Face folder softalign saved (`sft ... --out D`, D/model) and a PEFT adapter
softalign exported (`align --lora-r ...`, D/adapter) onto its GGUF base (de-quantized by
transformers' GGUF loader).

    python3 scripts/golden/check_exports.py TEXT SCORE_JSON MODEL_DIR                 # a saved model
    python3 scripts/golden/check_exports.py TEXT SCORE_JSON GGUF_FILE ADAPTER_DIR     # base + adapter

SCORE_JSON is `softalign score --text TEXT --json` of the same model. Prints the largest
per-token |Δ log p| and exits 1 above 1e-3. We ran it with transformers 5.25.0, peft 0.21.x,
torch 2.15.0 (CPU, float32).
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM

text, score_json, model_path = sys.argv[1:4]
adapter = sys.argv[4] if len(sys.argv) > 4 else None
ours = json.load(open(score_json))["texts"][0]
if model_path.endswith(".gguf"):
    folder, name = os.path.dirname(os.path.abspath(model_path)), os.path.basename(model_path)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
else:
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
if adapter:
    from peft import PeftModel
    model = PeftModel.from_pretrained(model, adapter)
model.eval()
ids = ours["input_ids"]
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0].float()
logp = torch.log_softmax(logits, -1)
theirs = [float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1)]
worst = max(abs(a - b) for a, b in zip(ours["token_logps"], theirs))
print(f"{len(theirs)} tokens: max |Δ log p| {worst:.2e} (softalign sum {ours['sum_logp']:.4f}, "
      f"{'peft' if adapter else 'transformers'} sum {sum(theirs):.4f})")
sys.exit(0 if worst <= 1e-3 else 1)
