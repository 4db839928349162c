"""Exports: a build to Megatron-LM's indexed dataset, a checkpoint to a Hugging Face Llama.

Megatron's `.bin`/`.idx` pair (the "MMIDIDX" format that megatron-core's
`IndexedDataset` reads) holds one sequence per document, each document's tokens followed
by the end-of-document token, as Megatron's `preprocess_data.py --append-eod` writes it.
The format is small and fixed, so it is written here with numpy; megatron-core is only
needed to read it back.

A checkpoint's parameter names already are Llama's, so the Hugging Face export copies
`model.safetensors` as is and writes the matching `config.json` and the tokenizer.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from curate.curation.manifest import canonical_json, load_manifest
from curate.curation.storage import (
    absolute,
    copy_atomic,
    join,
    open_atomic,
    parent,
    remove_file,
    write_text_atomic,
)
from curate.curation.tokenizer import eod_token_id, load_tokenizer
from curate.trainer.checkpoint import MODEL_FILE, read_state, resolve_checkpoint
from curate.trainer.data import shard_tokens

MEGATRON_INDEX_HEADER = b"MMIDIDX\x00\x00"
MEGATRON_INDEX_VERSION = 1
MEGATRON_DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}


def megatron_token_dtype(vocab_size: int) -> np.dtype:
    """Megatron's choice: uint16 below 65500 token ids, int32 above."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def write_megatron_phase(build: str, phase: dict, eod: int, dtype: np.dtype, prefix: str) -> None:
    """`prefix.bin`, then `prefix.idx`, each through a temporary name, an earlier export's index
    removed first: an index present means its data is whole."""
    root, name = parent(prefix), prefix.rsplit("/", 1)[1]
    remove_file(root, f"{name}.idx")
    lengths = [np.zeros(0, np.int64)]
    with open_atomic(root, f"{name}.bin") as data_file:
        for shard in phase["shards"]:
            tokens, document_lengths = shard_tokens(build, shard, eod)
            data_file.write(tokens.astype(dtype).tobytes(order="C"))
            lengths.append(document_lengths)
    lengths_array = np.concatenate(lengths).astype(np.int32)
    pointers = np.concatenate(([0], np.cumsum(lengths_array.astype(np.int64) * dtype.itemsize)[:-1])).astype(np.int64)
    document_indices = np.arange(len(lengths_array) + 1, dtype=np.int64)
    with open_atomic(root, f"{name}.idx") as index_file:
        index_file.write(MEGATRON_INDEX_HEADER)
        index_file.write(struct.pack("<Q", MEGATRON_INDEX_VERSION))
        index_file.write(struct.pack("<B", MEGATRON_DTYPE_CODES[dtype]))
        index_file.write(struct.pack("<Q", len(lengths_array)))
        index_file.write(struct.pack("<Q", len(document_indices)))
        index_file.write(lengths_array.tobytes(order="C"))
        index_file.write(pointers[: len(lengths_array)].tobytes(order="C"))
        index_file.write(document_indices.tobytes(order="C"))


def export_megatron(build: str, prefix: str) -> list[str]:
    """One `.bin`/`.idx` pair per phase; returns the prefixes (`PREFIX_phase-1_text_document`, ...)."""
    manifest = load_manifest(build)
    eod = int(manifest["tokenizer"]["eod_token_id"])
    dtype = megatron_token_dtype(int(manifest["tokenizer"]["vocab_size"]))
    written = []
    for phase in manifest["phases"]:
        phase_prefix = absolute(f"{prefix}_{phase['name']}_text_document")
        write_megatron_phase(build, phase, eod, dtype, phase_prefix)
        written.append(phase_prefix)
    return written


def hf_llama_config(config: dict, eod: int) -> dict:
    """transformers' LlamaConfig fields for a trainer configuration."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config["vocab_size"],
        "hidden_size": config["hidden_size"],
        "intermediate_size": config["ffn_hidden_size"],
        "num_hidden_layers": config["num_layers"],
        "num_attention_heads": config["num_attention_heads"],
        "num_key_value_heads": config["num_query_groups"],
        "head_dim": config["hidden_size"] // config["num_attention_heads"],
        "hidden_act": "silu",
        "max_position_embeddings": config["seq_length"],
        "rms_norm_eps": config["norm_epsilon"],
        "rope_theta": float(config["rotary_base"]),
        "tie_word_embeddings": not config["untie_embeddings_and_output_weights"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": config["init_method_std"],
        "bos_token_id": eod,
        "eos_token_id": eod,
        "torch_dtype": "float32",
    }


def export_hf(checkpoint: str | Path, output: str | Path) -> str:
    """Write `output/` (a folder or URL) with config.json, model.safetensors and the run's tokenizer."""
    checkpoint = resolve_checkpoint(checkpoint)
    output = absolute(os.fspath(output))
    tokenizer_path = join(parent(parent(checkpoint)), "tokenizer.json")
    tokenizer = load_tokenizer(tokenizer_path)
    eod = eod_token_id(tokenizer)
    eod_token = tokenizer.id_to_token(eod)
    config = read_state(checkpoint)["config"]
    write_text_atomic(output, "config.json", canonical_json(hf_llama_config(config, eod)))
    copy_atomic(join(checkpoint, MODEL_FILE), output, MODEL_FILE)
    copy_atomic(tokenizer_path, output, "tokenizer.json")
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": eod_token,
        "eos_token": eod_token,
        "model_max_length": config["seq_length"],
    }
    write_text_atomic(output, "tokenizer_config.json", json.dumps(tokenizer_config, indent=2) + "\n")
    return output
