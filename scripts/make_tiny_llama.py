#!/usr/bin/env python3
"""Write a random-weight Llama model directory that vLLM and transformers load, with a
byte-level BPE tokenizer trained here on generated text. Nothing is downloaded; the same
arguments give the same files.

usage: make_tiny_llama.py DIR [--size timing|small] [--seed 0]

  timing  (default) hidden 1024, intermediate 2816, 8 layers, 16 heads, 8 KV heads: ≈ 97 M
          parameters, large enough that a CPU decode step is dominated by the model
  small   hidden 256, intermediate 688, 4 layers, 8 heads, 4 KV heads: ≈ 4 M parameters

Run it with the python of the vLLM venv (it needs torch, transformers and tokenizers);
scripts/vllm-cpu.sh model does that.
"""
import argparse
import json
import os
import random

# before tokenizers is imported: train on one thread, so merges never depend on scheduling
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

SIZES = {
    "timing": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                   num_attention_heads=16, num_key_value_heads=8),
    "small": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=4),
}
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def corpus(seed):
    """Deterministic pseudo-text: syllable words in sentences, plus a few English words."""
    rng = random.Random(seed)
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    words = ["".join(rng.choice(consonants) + rng.choice(vowels)
                     for _ in range(rng.choice([1, 1, 2, 2, 3])))
             for _ in range(3000)]
    words += ["hello", "world", "the", "a", "of", "and", "to", "in", "is", "it", "user",
              "assistant", "system", "what", "how", "why"]
    lines = []
    for _ in range(4000):
        s = " ".join(rng.choice(words) for _ in range(rng.randint(5, 20)))
        lines.append(s.capitalize() + rng.choice([".", ".", "?", "!", ",", ":"]))
    return lines


def byte_level_char(b):
    """The character the ByteLevel pre-tokenizer (GPT-2's byte-to-unicode map) gives byte b."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    if b in printable:
        return chr(b)
    return chr(256 + [x for x in range(256) if x not in printable].index(b))


def tokenizer(seed, vocab, max_len):
    # Byte-level BPE whose base alphabet is printable ASCII, tab and newline only: every token
    # then decodes to whole, non-empty text, so a streamed response carries each token's text
    # in its own chunk (with all 256 bytes, a random model emits partial UTF-8 sequences that
    # the server holds back as empty chunks). Other input bytes become <unk>.
    ascii_bytes = [0x09, 0x0A] + list(range(0x20, 0x7F))
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=[byte_level_char(b) for b in ascii_bytes],
        limit_alphabet=len(ascii_bytes),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(seed), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="</s>", model_max_length=max_len)
    hf.chat_template = CHAT_TEMPLATE
    return hf


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir")
    p.add_argument("--size", choices=sorted(SIZES), default="timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--max-pos", type=int, default=2048)
    a = p.parse_args()
    os.makedirs(a.outdir, exist_ok=True)

    tok = tokenizer(a.seed, a.vocab, a.max_pos)
    tok.save_pretrained(a.outdir)
    # chat template also in tokenizer_config.json for readers that look only there
    cfg_path = os.path.join(a.outdir, "tokenizer_config.json")
    with open(cfg_path) as f:
        tc = json.load(f)
    if "chat_template" not in tc:
        tc["chat_template"] = CHAT_TEMPLATE
        with open(cfg_path, "w") as f:
            json.dump(tc, f, indent=2, sort_keys=True)

    torch.manual_seed(a.seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        max_position_embeddings=a.max_pos,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
        dtype="bfloat16",
        **SIZES[a.size],
    )
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(a.outdir, safe_serialization=True)
    # a plain generation config: nothing that changes sampling
    with open(os.path.join(a.outdir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id}, f)

    n = sum(t.numel() for t in model.parameters())
    ids = tok("Hello world.\n").input_ids
    print(f"wrote {a.outdir}: size={a.size} vocab={len(tok)} params={n / 1e6:.1f}M bfloat16")
    print(f"  'Hello world.\\n' -> {ids} -> {tok.decode(ids, skip_special_tokens=True)!r}")


if __name__ == "__main__":
    main()
