"""PyTorch baseline for `softalign bench step`.

One preference-training step of the SmolLM2-135M shape (random init, tied head) on 2 pairs of
256 tokens (4 sequences): reference forward under no_grad, policy forward + backward of the
DPO loss on full-vocabulary log-softmax (as TRL computes it), then a fused AdamW update timed
separately. PyTorch eager, transformers' LlamaForCausalLM, all threads of the machine.

    python3 -m venv .cache/venv-torch && .cache/venv-torch/bin/pip install torch transformers peft
    .cache/venv-torch/bin/python scripts/pytorch-train-step.py [STEPS] [--json] [--lora-r R]
        [--gradient-checkpointing] [--device cuda|cuda:N|cpu]

With --lora-r R the policy is peft's LoRA (r R, alpha 2R, all-linear, no dropout) on the frozen
model and the reference forward runs the same network with the adapter disabled, as TRL does for
peft models (`softalign bench step --lora-r R` measures the same step); --gradient-checkpointing
turns on transformers' (non-reentrant) activation checkpointing. --device cuda runs the step on
the GPU (`softalign bench step --device cuda` measures the same step there); every timed phase
waits for the device.

The last line of stdout is the median step; with --json, the object `softalign bench step --json`
prints: {"step_s", "update_s", "policy_tokens_per_s", "peak_rss_bytes", "cpu", "device",
"peak_device_bytes"}.
"""
import json
import platform
import resource
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

SEQUENCES, LENGTH, BETA = 4, 256, 0.1


def sequence_logps(model, tokens):
    logits = model(tokens).logits[:, :-1]
    logps = torch.gather(logits.log_softmax(-1), 2, tokens[:, 1:, None]).squeeze(2)
    return logps.sum(1)


def option(name):
    """The value after `name` on the command line, or None."""
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return None


def main():
    lora_r = option("--lora-r")
    device = torch.device(option("--device") or "cpu")
    checkpointing = "--gradient-checkpointing" in sys.argv
    args = [a for a in sys.argv[1:] if not a.startswith("--") and a not in (lora_r, option("--device"))]
    steps = int(args[0]) if args else 3
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
        rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True,
    )
    policy = LlamaForCausalLM(config)
    if checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora_r is not None:
        from peft import LoraConfig as PeftLoraConfig, get_peft_model
        r = int(lora_r)
        policy = get_peft_model(policy, PeftLoraConfig(
            r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear",
            task_type="CAUSAL_LM"))
        reference = None
    else:
        reference = LlamaForCausalLM(config)
        reference.load_state_dict(policy.state_dict())
        reference.eval()
    policy.to(device)
    if reference is not None:
        reference.to(device)
    policy.train()
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-6, fused=True)
    tokens = torch.randint(0, config.vocab_size, (SEQUENCES, LENGTH)).to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    params = sum(p.numel() for p in policy.parameters())
    print(f"torch {torch.__version__}: {params} parameters, "
          f"{sum(p.numel() for p in trainable)} trained; batch {SEQUENCES} x {LENGTH}; "
          f"{torch.get_num_threads()} threads", file=sys.stderr)
    totals, updates = [], []
    for step in range(steps + 1):
        started = time.perf_counter()
        with torch.no_grad():
            if reference is None:
                with policy.disable_adapter():
                    reference_logps = sequence_logps(policy, tokens)
            else:
                reference_logps = sequence_logps(reference, tokens)
        sync()
        ref_s = time.perf_counter() - started
        t = time.perf_counter()
        ratio = (sequence_logps(policy, tokens) - reference_logps).view(SEQUENCES // 2, 2)
        loss = -F.logsigmoid(BETA * (ratio[:, 0] - ratio[:, 1])).mean()
        loss.backward()
        sync()
        policy_s = time.perf_counter() - t
        step_s = time.perf_counter() - started
        t = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        update_s = time.perf_counter() - t
        label = "warm-up" if step == 0 else "step"
        print(f"{label} {step}: reference forward {ref_s:.2f} s, policy forward+backward "
              f"{policy_s:.2f} s -> {step_s:.2f} s (loss {loss.item():.4f}); AdamW update "
              f"{update_s:.2f} s", file=sys.stderr)
        if step > 0:
            totals.append(step_s)
            updates.append(update_s)
    step_s = statistics.median(totals)
    # ru_maxrss is in KiB on Linux.
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    on_gpu = device.type == "cuda"
    peak_device = torch.cuda.max_memory_reserved(device) if on_gpu else None
    device_name = torch.cuda.get_device_name(device) if on_gpu else "cpu"
    if "--json" in sys.argv[1:]:
        print(json.dumps({
            "step_s": step_s, "update_s": statistics.median(updates),
            "policy_tokens_per_s": SEQUENCES * LENGTH / step_s, "peak_rss_bytes": peak_rss,
            "cpu": cpu_name(), "device": device_name, "peak_device_bytes": peak_device,
        }))
        return
    print(f"pytorch_train_step: median {step_s:.2f} s per step "
          f"(reference forward + policy forward/backward, {SEQUENCES} x {LENGTH} tokens), "
          f"{SEQUENCES * LENGTH / step_s:.0f} policy tokens/s; peak RSS {peak_rss / 1e9:.2f} GB; "
          f"{torch.backends.cpu.get_cpu_capability()} kernels")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
