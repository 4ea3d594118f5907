"""A CLIP-format byte-level BPE tokenizer trained on a dataset's captions.

Training from scratch needs a vocabulary that covers the captions' languages (the emoji set has captions
in 14 languages, CJK included), so we train the BPE merges with the `tokenizers` library on the training
captions instead of shipping OpenAI's English-heavy vocabulary.

The result is exactly what `transformers.CLIPTokenizer` reads (and what `StableDiffusionPipeline` loads
as its `tokenizer/`): `vocab.json` + `merges.txt` in OpenAI CLIP's layout, plus `tokenizer.json` and
`tokenizer_config.json` from `save_pretrained`. The layout of the vocabulary follows OpenAI's:

    ids 0..255       the 256 byte-level symbols
    ids 256..511     the same symbols at the end of a word ("a</w>")
    ids 512..        one token per merge, in merge order
    last two ids     <|startoftext|>, <|endoftext|>  (the pad token is <|endoftext|>, as in CLIP)

Keeping every byte symbol (with and without `</w>`) means any UTF-8 text tokenizes without an unknown
token, even characters never seen in training: they fall back to their bytes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTokenizer

from latentdiff.errors import UserError

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = EOS_TOKEN  # CLIP pads with <|endoftext|>; the text model pools at the first EOS (eos_token_id)
END_OF_WORD = "</w>"
# Training only: chr(WORD_END_STAND_INS + i) stands for byte symbol i followed by </w> (a private-use plane,
# which no caption's byte-level symbols reach)
WORD_END_STAND_INS = 0xF0000

NUM_BYTE_SYMBOLS = 256
NUM_SPECIAL_TOKENS = 2
# 512 base symbols + 2 special tokens, and at least a few hundred merges to be worth having.
MIN_VOCAB_SIZE = 2 * NUM_BYTE_SYMBOLS + NUM_SPECIAL_TOKENS + 64


def _byte_alphabet() -> list[str]:
    """The 256 byte-level symbols in byte order: GPT-2/CLIP's `bytes_to_unicode` (printable bytes stand
    for themselves, the others for chr(256), chr(257), ... in byte order)."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), ord("ÿ") + 1))
    ordered, extra = [], 0
    for byte in range(256):
        if byte in printable:
            ordered.append(chr(byte))
        else:
            ordered.append(chr(256 + extra))
            extra += 1
    # The tokenizers library's ByteLevel pre-tokenizer must emit these same symbols.
    assert set(ordered) == set(ByteLevel.alphabet()), "ByteLevel alphabet differs from bytes_to_unicode"
    return ordered


def _train_merges(captions: list[str], vocab_size: int) -> list[tuple[str, str]]:
    """BPE merges learned on `captions` with the same normalizer and pre-tokenizer as CLIPTokenizer.

    The same captions give the same merges in every process. The `tokenizers` trainer with an
    `end_of_word_suffix` is not deterministic: it numbers the suffixed symbols ("d</w>") in hash-map order,
    and those numbers break ties between merges of equal count (huggingface/tokenizers#1794, #2066), so two
    runs on the same captions could swap "ed</w>" and "er</w>" and give the text encoder different ids. So
    we pre-tokenize here and hand the trainer each word with its last symbol replaced by a stand-in
    character for "symbol</w>": all 512 starting symbols are then plain characters, which the trainer
    sorts before numbering, and the merges come back in CLIP's form.
    """
    # Borrow the normalizer (NFC, whitespace, lowercase) and pre-tokenizer (CLIP regex + byte-level)
    # from an empty transformers CLIPTokenizer so training sees exactly what inference will.
    reference = CLIPTokenizer().backend_tokenizer
    alphabet = _byte_alphabet()
    word_end = {symbol: chr(WORD_END_STAND_INS + index) for index, symbol in enumerate(alphabet)}

    def words(caption: str) -> str:
        pieces = reference.pre_tokenizer.pre_tokenize_str(reference.normalizer.normalize_str(caption))
        # byte-level pieces hold no whitespace (bytes_to_unicode maps it away), so a space separates them
        return " ".join(piece[:-1] + word_end[piece[-1]] for piece, _ in pieces if piece)

    def clip_form(symbol: str) -> str:
        if symbol and ord(symbol[-1]) >= WORD_END_STAND_INS:
            return symbol[:-1] + alphabet[ord(symbol[-1]) - WORD_END_STAND_INS] + END_OF_WORD
        return symbol

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=alphabet + list(word_end.values()))
    # Sorted input: the merges depend only on the captions and their counts, not on the dataset's order.
    tokenizer.train_from_iterator((words(caption) for caption in sorted(captions)), trainer=trainer)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.model.save(tmp)
        lines = (Path(tmp) / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = []
    for line in lines:
        if not line or line.startswith("#version"):
            continue
        left, right = line.split(" ")
        merges.append((clip_form(left), clip_form(right)))
    return merges


def build_vocab(merges: list[tuple[str, str]], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """OpenAI CLIP's vocabulary layout (see the module docstring) for `merges`, cut to `vocab_size`."""
    alphabet = _byte_alphabet()
    tokens = alphabet + [symbol + END_OF_WORD for symbol in alphabet]
    seen = set(tokens)
    kept: list[tuple[str, str]] = []
    budget = vocab_size - NUM_SPECIAL_TOKENS
    for left, right in merges:
        if len(tokens) >= budget:
            break
        merged = left + right
        # A merge is only usable if both halves are tokens already (always true for trainer output,
        # since merges come in creation order); its result becomes the next id.
        if left not in seen or right not in seen or merged in seen:
            continue
        tokens.append(merged)
        seen.add(merged)
        kept.append((left, right))
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {token: index for index, token in enumerate(tokens)}, kept


def train_clip_tokenizer(captions: list[str], vocab_size: int, max_length: int, out_dir: str | Path | None = None):
    """Train a CLIP-format BPE on `captions` and return a `transformers.CLIPTokenizer`.

    If `out_dir` is given, the tokenizer is saved there (vocab.json, merges.txt, tokenizer.json,
    tokenizer_config.json) so `CLIPTokenizer.from_pretrained(out_dir)` loads it. Deterministic: the same
    captions give byte-identical files.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise UserError(f"A CLIP tokenizer needs a vocabulary of at least {MIN_VOCAB_SIZE} tokens (got {vocab_size}); "
                        f"raise the preset's vocab_size.")
    captions = [c for c in captions if c and c.strip()]
    if not captions:
        raise UserError("No captions to train the tokenizer on; the dataset's training split has no text.")
    merges = _train_merges(captions, vocab_size)
    vocab, merges = build_vocab(merges, vocab_size)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length,
                              bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, unk_token=EOS_TOKEN, pad_token=PAD_TOKEN)
    if out_dir is not None:
        save_clip_tokenizer(tokenizer, out_dir)
    return tokenizer


def save_clip_tokenizer(tokenizer, out_dir: str | Path) -> None:
    """`save_pretrained` (tokenizer.json + tokenizer_config.json) plus OpenAI's vocab.json + merges.txt,
    taken from the saved tokenizer.json, so readers of either format (older transformers, other CLIP
    implementations) load the same vocabulary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    model = json.loads((out_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    if model.get("type") != "BPE":
        return
    vocab = model["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    merges_text = "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges)
    (out_dir / "merges.txt").write_text(merges_text, encoding="utf-8")
