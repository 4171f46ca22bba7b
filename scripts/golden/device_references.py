"""Reference values from transformers for the rotary scalings and two tiny families without a
shared/golden fixture (Gemma 2 with soft-capping, Phi-3 with longrope and partial rotary).

Run where PyTorch and transformers are installed (we ran it on the lent GPU machine's image:
torch 2.11, transformers 5.17, CPU float32):

    python3 scripts/golden/device_references.py TOKENIZER_DIR OUT_DIR

TOKENIZER_DIR holds tokenizer.json (we used ../shared/golden/hf-tiny-llama31's). Writes
OUT_DIR/rope_references.json, OUT_DIR/hf-tiny-gemma2/ and OUT_DIR/hf-tiny-phi3-longrope/ (each a
save_pretrained folder with expected_logits.json as the shared fixtures have it).
"""
import json
import math
import os
import sys

import torch
import transformers
from transformers import PreTrainedTokenizerFast

tok_dir, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
TEXT = "Soft preference labels rescale rotary frequencies in long contexts."


def guarded(name, fn):
    try:
        fn()
    except Exception as e:  # one failing case must not hide the others
        import traceback
        traceback.print_exc()
        print(f"FAILED {name}: {e!r}")


def rotary_table(config_cls, rotary_cls, params, head_dim=16, positions=(40, 300), **extra):
    config = config_cls(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=head_dim,
                        intermediate_size=96, num_hidden_layers=1, vocab_size=340,
                        rope_parameters=params, **extra)
    rows = []
    for n in positions:
        rotary = rotary_cls(config=config)
        x = torch.zeros(1, n, 64)
        pos = torch.arange(n)[None, :]
        cos, sin = rotary(x, pos)
        half = cos.shape[-1] // 2
        rows.append({"len": n, "cos": cos[0, :, :half].tolist(), "sin": sin[0, :, :half].tolist(),
                     "inv_freq": rotary.inv_freq.tolist(),
                     "attention_scaling": float(rotary.attention_scaling)})
    return {"rope_parameters": params, "extra": extra, "tables": rows}


L = transformers.models.llama.modeling_llama
P = transformers.models.phi3.modeling_phi3
refs = {"transformers": transformers.__version__, "torch": torch.__version__, "cases": {}}
cases = refs["cases"]
guarded("default", lambda: cases.__setitem__("default", rotary_table(L.LlamaConfig, L.LlamaRotaryEmbedding, {"rope_type": "default", "rope_theta": 10000.0})))
guarded("linear", lambda: cases.__setitem__("linear", rotary_table(L.LlamaConfig, L.LlamaRotaryEmbedding, {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0})))
guarded("dynamic", lambda: cases.__setitem__("dynamic", rotary_table(L.LlamaConfig, L.LlamaRotaryEmbedding, {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
                                max_position_embeddings=64)))
guarded("llama3", lambda: cases.__setitem__("llama3", rotary_table(L.LlamaConfig, L.LlamaRotaryEmbedding, {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                               "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64})))
guarded("yarn", lambda: cases.__setitem__("yarn", rotary_table(L.LlamaConfig, L.LlamaRotaryEmbedding, {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                             "original_max_position_embeddings": 64}, max_position_embeddings=256)))
guarded("yarn_mscale", lambda: cases.__setitem__("yarn_mscale", rotary_table(L.LlamaConfig, L.LlamaRotaryEmbedding, {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                    "original_max_position_embeddings": 64, "mscale": 1.0, "mscale_all_dim": 0.5,
                                    "beta_fast": 16.0, "beta_slow": 2.0}, max_position_embeddings=256)))
guarded("yarn_attention_factor", lambda: cases.__setitem__("yarn_attention_factor", rotary_table(L.LlamaConfig, L.LlamaRotaryEmbedding, {"rope_type": "yarn", "rope_theta": 10000.0,
                                              "factor": 4.0, "original_max_position_embeddings": 64, "attention_factor": 1.3,
                                              "truncate": False}, max_position_embeddings=256)))
short = [1.0 + 0.1 * i for i in range(4)]
long = [1.5 + 0.5 * i for i in range(4)]
guarded("longrope_partial", lambda: cases.__setitem__("longrope_partial", rotary_table(P.Phi3Config, P.Phi3RotaryEmbedding, {"rope_type": "longrope", "rope_theta": 10000.0,
                                         "short_factor": short, "long_factor": long, "partial_rotary_factor": 0.5,
                                         "original_max_position_embeddings": 64}, max_position_embeddings=256,
                                         partial_rotary_factor=0.5)))
with open(os.path.join(out, "rope_references.json"), "w") as f:
    json.dump(refs, f)

tokenizer = PreTrainedTokenizerFast(tokenizer_file=os.path.join(tok_dir, "tokenizer.json"), eos_token="<|endoftext|>")
ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]


def scale_up(model, norm_offset):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(norm_offset + 0.1 * torch.randn_like(p))
            else:
                p.mul_(8.0)


def save_fixture(model, name):
    folder = os.path.join(out, name)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(x).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    token_logps = [float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1)]
    greedy = model.generate(x, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
    with open(os.path.join(folder, "expected_logits.json"), "w") as f:
        json.dump({"text": TEXT, "input_ids": ids, "logits": logits.tolist(), "token_logps": token_logps,
                   "sum_logp_next_tokens": sum(token_logps), "greedy_next_12": greedy,
                   "source": f"transformers {transformers.__version__}, torch {torch.__version__}, float32, eager"}, f)


G = transformers.models.gemma2.modeling_gemma2
gemma2 = G.Gemma2ForCausalLM(G.Gemma2Config(
    vocab_size=340, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24, sliding_window=4,
    attn_logit_softcapping=5.0, final_logit_softcapping=8.0, max_position_embeddings=256,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    tie_word_embeddings=True, attn_implementation="eager"))
scale_up(gemma2, 0.0)
gemma2.eval()
guarded("gemma2", lambda: save_fixture(gemma2, "hf-tiny-gemma2"))

phi3 = P.Phi3ForCausalLM(P.Phi3Config(
    vocab_size=340, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=256, original_max_position_embeddings=16,
    partial_rotary_factor=0.5,
    rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0, 1.2, 1.4, 1.6],
                     "long_factor": [2.0, 3.0, 5.0, 8.0], "partial_rotary_factor": 0.5,
                     "original_max_position_embeddings": 16},
    bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=False, attn_implementation="eager"))
scale_up(phi3, 1.0)
phi3.eval()
guarded("phi3", lambda: save_fixture(phi3, "hf-tiny-phi3-longrope"))
print("written", out, transformers.__version__, torch.__version__)
