"""A tiny random chat LM saved like a real one, so tests and the toy profile run the real loading path.

Nothing is downloaded: the tokenizer is trained here on the template grammar's vocabulary, the model
is a 1-layer Llama with random weights. Both are written with `save_pretrained`, and read back by
`AutoTokenizer` / `AutoModelForCausalLM` exactly as a hub checkpoint would be.
"""

from __future__ import annotations

import random
from pathlib import Path

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _corpus(n: int, seed: int) -> list[str]:
    from clouds.config import TemplatePrompts
    from clouds.config.synthetic import DEFAULT_INSTRUCTION
    from stages.prompts.template import TemplateWriter

    writer = TemplateWriter(TemplatePrompts(), seed)
    rng = random.Random(seed)
    return [DEFAULT_INSTRUCTION] + [writer.sentence(rng) for _ in range(n)]


def save_tiny_causal_lm(folder: str | Path, *, hidden_size: int = 16, layers: int = 1, seed: int = 0) -> Path:
    """Write a random Llama and its word-level tokenizer (with a chat template) to `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    specials = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces and glues punctuation back
    tok.train_from_iterator(_corpus(200, seed), trainers.WordLevelTrainer(special_tokens=specials))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<|user|>", "<|assistant|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(folder)
    return folder
