"""Teacher test material: a tiny random-weight Qwen3 chat model and phase-1 source shards.

Nothing comes from a hub: the tokenizer is a byte-level BPE trained with `tokenizers` on a
few sentences and wrapped with transformers' `PreTrainedTokenizerFast` plus a ChatML chat
template (Qwen's format); the model is `Qwen3ForCausalLM` from a `Qwen3Config` with random
weights and a head size vLLM's CPU kernels support. The source shards look like a
regime A build's phase 1: id, text, input_ids and a metadata column, tokenized with a
small byte-level BPE saved as the build's `tokenizer.json`.
"""

from __future__ import annotations

import os

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TRAINING_TEXTS = [
    "Content to rewrite: the quick brown fox jumps over the lazy dog.",
    "<output> simple words and short sentences </output>",
    "function add(a, b) { return a + b; }\nconsole.log(add(1, 2));",
    "def add(a, b):\n    return a + b\n",
    "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？",
    "请用非常简单的词语和句子表达同样的意思。",
    "1. First, classify the content as [Text], [Exercise], or [Code].",
]


def build_tiny_qwen3(directory: str, seed: int = 0) -> str:
    """Write a tokenizer and a random-weight Qwen3 model into `directory`; return the path."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    os.makedirs(directory, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(TRAINING_TEXTS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(directory)

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
    )
    model = Qwen3ForCausalLM(config).to(torch.float32)
    model.save_pretrained(directory)
    return directory


def write_source_shards(root: str, shards: list[list[str]]) -> list[str]:
    """Write A-like phase-1 shards of the given texts (ids "s<shard>-<row>") and a tokenizer.json."""
    import pyarrow as pa

    from curate.curation.shards import shard_name, write_shard
    from curate.curation.tokenizer import encode_texts, save_tokenizer, train_bpe

    texts = [text for shard in shards for text in shard]
    tokenizer = train_bpe(texts + TRAINING_TEXTS, 300)
    os.makedirs(root, exist_ok=True)
    save_tokenizer(tokenizer, os.path.join(root, "tokenizer.json"))
    relpaths = []
    for index, shard in enumerate(shards):
        relpath = f"phase-1/{shard_name(index)}"
        table = pa.table(
            {
                "id": [f"s{index}-{row}" for row in range(len(shard))],
                "text": pa.array(shard, pa.string()),
                "input_ids": pa.array(encode_texts(tokenizer, shard), pa.list_(pa.int32())),
                "meta": pa.array([{"source": f"test-{index}"}] * len(shard), pa.struct([("source", pa.string())])),
            }
        )
        write_shard(table, root, relpath)
        relpaths.append(relpath)
    return relpaths
