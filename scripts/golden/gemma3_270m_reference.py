"""transformers' reference for the real Gemma 3 270M Q4_K_M GGUF (scripts/fetch-gemma3.sh):
the file de-quantized to float32 by transformers' GGUF loader, per-token log-probabilities of a
few texts (BOS first, as Gemma expects) and a greedy continuation.

    python3 scripts/golden/gemma3_270m_reference.py .cache/models/gemma-3-270m-q4_k_m.gguf \
        crates/model/tests/data/gemma3-270m-reference.json

We ran it with transformers 5.25.0, torch 2.15.0, gguf 0.19.0 (CPU, float32).
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

path, out = sys.argv[1], sys.argv[2]
folder, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
model.eval()
texts = [
    "The capital of France is Paris. The capital of Italy is",
    "Soft preference labels say how sure the annotators were.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
]
cases = []
for text in texts:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    token_logps = [float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1)]
    greedy = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)[0, len(ids):].tolist()
    cases.append({"text": text, "input_ids": ids, "token_logps": token_logps, "greedy_next_8": greedy})
with open(out, "w") as f:
    json.dump({"source": f"transformers {transformers.__version__}, torch {torch.__version__}, "
                         f"{name} de-quantized to float32", "cases": cases}, f, indent=1)
print("written", out)
