"""Prompt upsampling: a short user prompt ("a red circle and a blue star") becomes a detailed caption
in the style the generator was trained on, written by a small seq2seq transformer trained on
Shapes World (short, detailed) caption pairs.

The encoder reads the prompt's UTF-8 bytes (any text is valid input); the decoder writes caption
tokens (the word vocabulary by default) with the shared KV-cache decoder (`sora_jax.caption.decode`).
The details a short prompt leaves open (sizes, background, motions) are the model's most likely
choice under greedy decoding, or a sample at a temperature.

Preservation metric: the objects (colour + shape) a short prompt names should all appear in its
upsampled caption. `preservation` counts, per attribute, how many of the prompt's colours, shapes
and (colour, shape) objects the upsampled caption's object listing contains (multiset matching).

    python -m sora_jax.caption.upsampler --workdir UPSAMPLER_WORKDIR --prompt "a red circle"
    python -m sora_jax.caption.upsampler --workdir UPSAMPLER_WORKDIR --evaluate 500
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from data_pipelines.shapes_world import COLOURS, SHAPES
from sora_jax.caption.decode import make_decoder
from sora_jax.caption.layers import EncoderBlock, TextDecoder, layer_norm
from sora_jax.caption.metrics import parse_caption
from sora_jax.caption.model import check_sizes
from sora_jax.caption.vocab import caption_tokenizer
from sora_jax.text.tokenizers import ByteTokenizer

_PROMPT_OBJECT = re.compile(rf"\b({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b")


@dataclasses.dataclass(frozen=True)
class UpsamplerConfig:
    """Sizes of the upsampler: prompt encoder over bytes, caption decoder over `vocab_size` tokens."""

    vocab_size: int
    dim: int = 128
    heads: int = 4
    mlp_dim: int = 512
    encoder_depth: int = 2
    decoder_depth: int = 2
    max_prompt_len: int = 128
    max_caption_len: int = 128
    eps: float = 1e-6
    dtype: str = "float32"
    attention: str = "xla"


class Upsampler(nnx.Module):
    """Byte-level prompt encoder (learned positions, bidirectional) and a caption `TextDecoder`."""

    def __init__(self, config: UpsamplerConfig, *, rngs: nnx.Rngs):
        check_sizes(config.dim, config.heads, "model")
        self.config = config
        init = nnx.initializers.normal(0.02)
        block_args = dict(eps=config.eps, dtype=jnp.dtype(config.dtype), implementation=config.attention, rngs=rngs)
        self.prompt_tokens = nnx.Embed(ByteTokenizer.vocab_size, config.dim,
                                       embedding_init=nnx.with_partitioning(init, ("vocab", "embed")), rngs=rngs)
        self.prompt_positions = nnx.Embed(config.max_prompt_len, config.dim,
                                          embedding_init=nnx.with_partitioning(init, (None, "embed")), rngs=rngs)
        self.encoder = nnx.List([EncoderBlock(config.dim, config.heads, config.mlp_dim, **block_args)
                                 for _ in range(config.encoder_depth)])
        self.encoder_norm = layer_norm(config.dim, config.eps, rngs)
        self.decoder = TextDecoder(config.vocab_size, config.dim, config.decoder_depth, config.heads, config.mlp_dim,
                                   config.max_caption_len, **block_args)

    def memory(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        """Encoded prompts `(B, P, D)` and their segment ids `(B, P)` (1 = prompt byte, 0 = padding)."""
        ids = batch["prompt_tokens"]  # (B, P)
        x = self.prompt_tokens(ids) + self.prompt_positions(jnp.arange(ids.shape[1]))  # (B, P, D)
        for block in self.encoder:
            x = block(x, batch["prompt_segment_ids"])  # (B, P, D)
        return self.encoder_norm(x), batch["prompt_segment_ids"]

    def __call__(self, batch: dict, caption_inputs: jax.Array) -> jax.Array:
        """Teacher-forced logits `(B, 1, T, V)` for `caption_inputs (B, 1, T)`."""
        memory, memory_ids = self.memory(batch)
        return self.decoder(caption_inputs, self.decoder.memory_kv(memory), batch["caption_segments"], memory_ids)


def prompt_batch(prompts: list[str], max_prompt_len: int) -> dict:
    """Model inputs for prompts: bytes `(B, P)`, their segment ids, and one caption wanted per row."""
    tokenizer = ByteTokenizer()
    tokens = np.zeros((len(prompts), max_prompt_len), np.int32)  # (B, P)
    for i, prompt in enumerate(prompts):
        if not prompt.strip():
            raise ValueError(f"prompt {i} is empty")
        ids = tokenizer.encode(prompt, max_prompt_len)
        tokens[i, : len(ids)] = ids
    return {"prompt_tokens": tokens, "prompt_segment_ids": (tokens != 0).astype(np.int32),
            "caption_segments": np.ones((len(prompts), 1), np.int32)}


class PromptUpsampler:
    """`upsample(prompts) -> detailed captions` with a trained `Upsampler`."""

    def __init__(self, model: Upsampler, tokenizer_name: str, rows: int = 8):
        self.model, self.rows = model, rows
        self.tokenizer = caption_tokenizer(tokenizer_name)
        self._decode = make_decoder(model)

    @classmethod
    def from_workdir(cls, workdir: str, rows: int = 8) -> "PromptUpsampler":
        """The upsampler trained in `workdir` (latest checkpoint, EMA weights when kept)."""
        from sora_jax.train.restore import load_trained  # noqa: PLC0415

        trained = load_trained(workdir)
        if trained.config.task != "upsampler":
            raise ValueError(f"{workdir} trained task {trained.config.task!r}, not a prompt upsampler")
        return cls(trained.model, trained.config.model.tokenizer, rows)

    def upsample(self, prompts: list[str], temperature: float = 0.0, seed: int = 0) -> list[str]:
        """Detailed captions for `prompts`, in order (greedy unless `temperature > 0`)."""
        out = []
        for start in range(0, len(prompts), self.rows):
            chunk = list(prompts[start : start + self.rows])
            padded = chunk + [chunk[-1]] * (self.rows - len(chunk))  # fixed rows: one compilation
            batch = prompt_batch(padded, self.model.config.max_prompt_len)
            tokens = self._decode(batch, temperature, seed + start)  # (rows, 1, T)
            out += [self.tokenizer.decode(ids) for ids in tokens[: len(chunk), 0]]
        return out


@functools.lru_cache(maxsize=4)
def _cached(workdir: str) -> PromptUpsampler:
    return PromptUpsampler.from_workdir(workdir, rows=1)


def upsample_prompt(workdir: str, prompt: str, temperature: float = 0.0, seed: int = 0) -> str:
    """The detailed caption for one prompt with the upsampler trained in `workdir` (what
    `sora-jax generate --upsample-prompt` calls); the model stays loaded for later calls."""
    return _cached(workdir).upsample([prompt], temperature, seed)[0]


def prompt_objects(prompt: str) -> list[tuple[str, str]]:
    """(colour, shape) objects a prompt names, in order."""
    return _PROMPT_OBJECT.findall(prompt)


def preservation(prompt: str, upsampled: str) -> dict:
    """Per attribute `[kept, named in prompt]`: colours, shapes and objects of `prompt` in `upsampled`."""
    asked = prompt_objects(prompt)
    written = [(obj["colour"], obj["shape"]) for obj in parse_caption(upsampled)]

    def kept(a, b):
        return sum((collections.Counter(a) & collections.Counter(b)).values())

    return {"colour": [kept([c for c, _ in asked], [c for c, _ in written]), len(asked)],
            "shape": [kept([s for _, s in asked], [s for _, s in written]), len(asked)],
            "object": [kept(asked, written), len(asked)],
            "extra_objects": [max(0, len(written) - kept(asked, written)), len(asked)]}


def evaluate_upsampler(upsampler: PromptUpsampler, pairs: list[dict]) -> dict:
    """Preservation over held-out `{"caption_short", "caption"}` pairs, plus exact-match rate and examples."""
    prompts = [p["caption_short"] for p in pairs]
    outputs = upsampler.upsample(prompts)
    sums: dict[str, list[int]] = {}
    for prompt, output in zip(prompts, outputs):
        for k, (kept, total) in preservation(prompt, output).items():
            sums.setdefault(k, [0, 0])
            sums[k][0] += kept
            sums[k][1] += total
    report = {k: kept / max(total, 1) for k, (kept, total) in sums.items()}
    report["overall"] = (sums["colour"][0] + sums["shape"][0]) / max(1, sums["colour"][1] + sums["shape"][1])
    report["exact_captions"] = float(np.mean([o == p["caption"] for o, p in zip(outputs, pairs)]))
    report["pairs"], report["counts"] = len(pairs), sums
    report["examples"] = [{"prompt": p, "upsampled": o} for p, o in zip(prompts[:6], outputs[:6])]
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Upsample prompts, or measure attribute preservation.")
    parser.add_argument("--workdir", required=True, help="the upsampler's training workdir")
    parser.add_argument("--prompt", action="append", default=[], help="a short prompt (repeatable)")
    parser.add_argument("--evaluate", type=int, default=0, help="held-out pairs to score")
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args(argv)
    upsampler = PromptUpsampler.from_workdir(args.workdir)
    for prompt, caption in zip(args.prompt, upsampler.upsample(args.prompt, args.temperature)):
        print(json.dumps({"prompt": prompt, "upsampled": caption}))
    if args.evaluate:
        from sora_jax.caption.upsampler_task import caption_pairs  # noqa: PLC0415
        from sora_jax.train.restore import load_run_config  # noqa: PLC0415

        data = load_run_config(args.workdir).data
        pairs = caption_pairs(data.world, "validation", range(args.evaluate), data.max_objects)
        print(json.dumps(evaluate_upsampler(upsampler, pairs)))


if __name__ == "__main__":
    main()
