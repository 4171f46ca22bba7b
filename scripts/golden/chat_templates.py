#!/usr/bin/env python3
"""Golden chat-template renderings: what transformers' apply_chat_template(tokenize=False) gives.

Writes crates/model/tests/data/chat_templates/expected.json from the templates beside it
(NAME.jinja: llama.cpp's copies of the checkpoints' templates, from the llama-cpp-python 0.3.36
sdist's vendor/llama.cpp/models/templates; gemma-3-it.jinja from google/gemma-3 IT's
tokenizer_config.json; smollm2-instruct.jinja from SmolLM2-135M-Instruct's). For every template
and conversation, with and without add_generation_prompt, it records the rendered string, or the
message of the exception the template raises. crates/model/tests/chat_templates.rs checks
softalign's renderings against it byte for byte.

Environment (pip, Python 3.11): transformers==5.25.0 jinja2==3.1.6 tokenizers==0.23.3 (no torch).
Command, from the repository root:

    /work/venv-chat/bin/python scripts/golden/chat_templates.py /work/shared/golden/hf-tiny-llama/tokenizer.json
"""

import json
import sys
from pathlib import Path

import jinja2
import transformers
from transformers import PreTrainedTokenizerFast

DATA = Path(__file__).resolve().parents[2] / "crates/model/tests/data/chat_templates"

# The special-token strings each checkpoint's tokenizer_config.json gives (None: not set).
TOKENS = {
    "llama-3.1-instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "gemma-3-it": ("<bos>", "<eos>"),
    "gemma-2-it": ("<bos>", "<eos>"),
    "phi-3.5-mini-instruct": ("<s>", "<|endoftext|>"),
    "qwen2.5-instruct": (None, "<|im_end|>"),
    "qwen3": (None, "<|im_end|>"),
    "mistral-nemo-instruct": ("<s>", "</s>"),
    "smollm2-instruct": ("<|im_start|>", "<|im_end|>"),
}


def turn(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "system_user": [turn("system", "You are a terse assistant."), turn("user", "What is 2+2?")],
    "user_only": [turn("user", "Hello!")],
    "multi_turn": [
        turn("user", "Hi there"),
        turn("assistant", "Hello! How can I help?"),
        turn("user", "Tell me a joke."),
    ],
    "system_multi_turn": [
        turn("system", "Be kind.\nBe brief."),
        turn("user", "Hi"),
        turn("assistant", "Hey"),
        turn("user", "Bye"),
    ],
    "whitespace": [
        turn("user", "  Line one\nLine two  \n"),
        turn("assistant", "\n Answer with  spaces  "),
        turn("user", " last\n\nquestion "),
    ],
    "ends_with_assistant": [turn("user", "2+2?"), turn("assistant", "4")],
    "two_users": [turn("user", "first"), turn("user", "second")],
    "unicode": [turn("user", "Ça va? 日本語 🙂 \"quoted\" \\ back")],
}


def main(tokenizer_json):
    expected = {
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "conversations": CONVERSATIONS,
        "templates": {},
    }
    for name, (bos, eos) in TOKENS.items():
        template = (DATA / f"{name}.jinja").read_text(encoding="utf-8")
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=tokenizer_json, bos_token=bos, eos_token=eos)
        tokenizer.chat_template = template
        cases = []
        for conversation, messages in CONVERSATIONS.items():
            for add_generation_prompt in (False, True):
                case = {"conversation": conversation, "add_generation_prompt": add_generation_prompt}
                try:
                    case["text"] = tokenizer.apply_chat_template(
                        messages, tokenize=False, add_generation_prompt=add_generation_prompt
                    )
                except jinja2.TemplateError as error:
                    case["error"] = str(error)
                cases.append(case)
        expected["templates"][name] = {"bos_token": bos, "eos_token": eos, "cases": cases}
    out = DATA / "expected.json"
    out.write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1])
