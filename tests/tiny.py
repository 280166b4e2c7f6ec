"""Tiny real models built in the tests: a byte-level BPE tokenizer trained here and random Llama LMs."""

from __future__ import annotations

import json
from pathlib import Path

TRAIN_TEXT = [
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with one step.",
    "Python is a programming language. It has lists, dicts and functions.\nThe end of a line.",
    "Data selection keeps the instances that a teacher finds likely and a reference finds hard.",
]


def corpus_texts(n: int, seed: int = 0) -> list[str]:
    """Varied real-ish prose from Python's own docs, cut into n documents."""
    from pydoc_data.topics import topics

    pieces = []
    for _, text in sorted(topics.items()):
        pieces.extend(p.strip() for p in text.split("\n\n") if len(p.strip()) > 40)
    step = max(1, len(pieces) // n)
    return [pieces[(i * step + seed) % len(pieces)] for i in range(n)]


def make_tokenizer(path: Path, vocab_size: int = 512, extra: list[str] | None = None) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TRAIN_TEXT + corpus_texts(200) + (extra or []), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    path.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(path)
    return path


def make_lm(path: Path, tokenizer_dir: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        pad_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_jsonl(path: Path, texts: list[str], key: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({key: t}) + "\n" for t in texts))
    return path


# A multiple-choice task for lm-evaluation-harness, defined here so it runs offline.
QUESTIONS = [
    {"question": "The quick brown fox jumps over the lazy", "choices": [" dog.", " of.", " def"], "answer": 0},
    {"question": "Python is a programming", "choices": [" banana", " language.", " the"], "answer": 1},
    {"question": "A journey of a thousand miles begins with one", "choices": [" step.", " cat", " lists"], "answer": 0},
    {"question": "It has lists, dicts and", "choices": [" miles", " fox", " functions."], "answer": 2},
]


def tiny_task(tmp_path) -> str:
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "miniplm_tiny.yaml").write_text(
        "task: miniplm_tiny\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{answer}}"\n'
        "metric_list:\n  - metric: acc\n"
    )
    return str(tmp_path / "tasks")
