"""Caption accuracy against Shapes World ground truth: do the colours, shapes and motions a caption
names agree with the clip's `meta`?

A detailed caption in the Shapes World grammar (`data_pipelines/shapes_world/captions.py`) lists the
objects in its first sentence ("A small red circle and a large blue star on ...") and gives each one
a sentence starting with its name and its motion verb ("The red circle moves ...", "... stays still",
"... bounces off", "... falls", "... spins"). `parse_caption` reads those back. Objects are then
matched one to one between caption and meta so that the most attributes agree (meta lists objects
by id, an order the video does not show, so the caption's order is not held against it), and each
attribute scores `agreeing / max(objects named, objects in meta)`: a missing or an invented object
costs one per attribute. Motion is scored on videos only (an image shows no motion). *Placement*
(where in a 3 x 3 grid of the frame an object sits: "in the centre", "in the top left") is scored
for the objects whose sentence names it, those of images and the still objects of videos, over the
matched pairs; it is reported apart and is not part of *overall*. `shape_by_size` splits shape over
the clip's objects by their size (is it the small objects that are named wrong?), and
`motion_by_type` splits motion over a video's objects by how they truly move (are falls and spins
missed?). The `validation` split of a Shapes World config holds a few dozen clips (about ±0.06 on
shape); the live source's `test` split holds 100,000 more held-out clips, so `--split test --limit
256` reads about 500 objects (±0.02). A captioner with the word-detection head (`model.concept_weight`)
also reports `concept_by_motion` (`concepts_by_motion`): what its encoder tells apart, read as the head
reads it.

    python -m sora_jax.caption.metrics --workdir CAPTIONER_WORKDIR --data shapes_world:tiny --split validation
    python -m sora_jax.caption.metrics --workdir CAPTIONER_WORKDIR --data shapes_world_live:tiny --split test --limit 256
    python -m sora_jax.caption.metrics --workdir CAPTIONER_WORKDIR --teacher-forced 6   # attribute words (teacher_forced_attributes)
"""
from __future__ import annotations

import argparse
import itertools
import json
import re

import numpy as np

from data_pipelines.shapes_world import COLOURS, MOTIONS, SHAPES, SIZES
from data_pipelines.shapes_world.captions import placement

ATTRIBUTES = ("colour", "shape", "motion")
_COLOUR, _SHAPE, _SIZE = "|".join(COLOURS), "|".join(SHAPES), "|".join(SIZES)
_OBJECT = re.compile(rf"\b(?:an?|A) (?:({_SIZE}) )?({_COLOUR}) ({_SHAPE})\b")
_SUBJECT = re.compile(rf"^The ({_COLOUR}) ({_SHAPE}) (.*)$")
_PLACEMENT = re.compile(r"^(?:is|stays still) (in the (?:top |bottom )?(?:left|right|centre)|at the (?:top|bottom)|"
                        r"on the (?:left|right))\b")


def motion_of(predicate: str) -> str | None:
    """Motion type of an object sentence's predicate ("moves quickly ...", "spins ..."), or None."""
    if predicate.startswith("stays still"):
        return "static"
    if predicate.startswith("spins"):
        return "rotate"
    if predicate.startswith("falls"):
        return "fall"
    if predicate.startswith("moves"):
        return "bounce" if ("bounces off" in predicate or "before it bounces" in predicate) else "linear"
    return None  # placement ("is in ...") or occlusion ("passes behind ...") sentences


def parse_caption(caption: str) -> list[dict]:
    """Objects a caption names, in order: `{"size", "colour", "shape", "motion", "placement"}` (None where
    unsaid)."""
    sentences = [s.strip() for s in re.split(r"(?<=\.)\s+", caption.strip()) if s.strip()]
    if not sentences:
        return []
    listing = sentences[0].split(" on ")[0]
    objects = [{"size": size or None, "colour": colour, "shape": shape, "motion": None, "placement": None}
               for size, colour, shape in _OBJECT.findall(listing)]
    for sentence in sentences[1:]:
        subject = _SUBJECT.match(sentence)
        if not subject:
            continue
        placed = _PLACEMENT.match(subject.group(3))
        said = {"motion": motion_of(subject.group(3)), "placement": placed.group(1) if placed else None}
        said = {k: v for k, v in said.items() if v}
        if not said:
            continue
        key = next(iter(said))  # the sentence's motion if it has one ("stays still in ..." has both)
        for obj in objects:  # the first object of that name still without it
            if (obj["colour"], obj["shape"]) == subject.group(1, 2) and obj[key] is None:
                obj.update(said)
                break
    return objects


def truth_from_meta(meta: dict | str) -> tuple[list[dict], bool]:
    """Objects of a clip's meta (size, colour, shape, motion, and the placement its caption states:
    images and still objects, else None) and whether it is a video."""
    meta = json.loads(meta) if isinstance(meta, str) else meta
    is_video = meta["frames"] > 1
    objects = [{k: obj[k] for k in ("size", "colour", "shape", "motion")} | {"placement": None}
               for obj in meta["objects"]]
    for obj, truth in zip(meta["objects"], objects):
        if not is_video or obj["motion"] == "static":
            truth["placement"] = placement(obj["positions"][0], meta)
    return objects, is_video


def _attributes(is_video: bool) -> tuple[str, ...]:
    return ("size",) + (ATTRIBUTES if is_video else ATTRIBUTES[:2])


def match_objects(predicted: list[dict], truth: list[dict], attributes) -> list[tuple[dict, dict]]:
    """`(predicted, truth)` pairs, one to one, that agree on the most of `attributes` (colour, shape,
    motion among them); objects of the longer list beyond the shorter's length stay unpaired."""
    best = 0, []
    small, large = sorted((predicted, truth), key=len)
    for chosen in itertools.permutations(range(len(large)), len(small)):  # at most 6! matchings
        pairs = list(zip(small, (large[i] for i in chosen)))
        score = sum(a[k] == b[k] for a, b in pairs for k in ATTRIBUTES if k in attributes)
        if score > best[0] or not best[1]:
            best = score, pairs
    return [(a, b) if small is predicted else (b, a) for a, b in best[1]]


def _right_by(truth, pairs, attribute: str, group: str) -> dict[str, list[int]]:
    """`{value of group: [attribute named right, objects]}` over the objects of `truth`."""
    named = {id(t): p for p, t in pairs}
    counts = {value: [0, 0] for value in dict.fromkeys(t[group] for t in truth)}
    for t in truth:
        counts[t[group]][0] += int(id(t) in named and named[id(t)][attribute] == t[attribute])
        counts[t[group]][1] += 1
    return counts


def score_caption(caption: str, meta: dict | str) -> tuple[dict, dict[str, list[int]], dict[str, list[int]]]:
    """`(agreement, shape_by_size, motion_by_type)` of a caption from one parse and one matching."""
    predicted, (truth, is_video) = parse_caption(caption), truth_from_meta(meta)
    attributes = _attributes(is_video)
    pairs = match_objects(predicted, truth, attributes)
    counts = {k: [sum(p[k] == t[k] for p, t in pairs), max(len(predicted), len(truth))] for k in attributes}
    counts["objects"] = [int(len(predicted) == len(truth)), 1]
    counts["placement"] = [sum(p["placement"] == t["placement"] for p, t in pairs if t["placement"]),
                           sum(bool(t["placement"]) for t in truth)]
    motions = _right_by(truth, pairs, "motion", "motion") if is_video else {}
    return counts, _right_by(truth, pairs, "shape", "size"), motions


def agreement(caption: str, meta: dict | str) -> dict:
    """Per-attribute `[agreeing, total]` of one caption against one meta (see the module docstring)."""
    return score_caption(caption, meta)[0]


def shape_by_size(caption: str, meta: dict | str) -> dict[str, list[int]]:
    """`{size: [shapes named right, objects]}` over the clip's objects of each size in `meta` (an object
    the caption leaves out counts as wrong): whether shape errors sit on the small objects."""
    return score_caption(caption, meta)[1]


def motion_by_type(caption: str, meta: dict | str) -> dict[str, list[int]]:
    """`{true motion: [motions named right, objects]}` over a video's objects (`{}` for an image):
    which motions (a fall, a spin) the captioner misses."""
    return score_caption(caption, meta)[2]


def summarize(counts: list[dict]) -> dict:
    """Agreement fractions per attribute and overall (colour, shape, motion together) over many clips."""
    sums: dict[str, list[int]] = {}
    for one in counts:
        for k, (right, total) in one.items():
            sums.setdefault(k, [0, 0])
            sums[k][0] += right
            sums[k][1] += total
    report = {k: right / total if total else None for k, (right, total) in sums.items()}
    right = sum(sums[k][0] for k in ATTRIBUTES if k in sums)
    total = sum(sums[k][1] for k in ATTRIBUTES if k in sums)
    report["overall"] = right / total if total else None
    report["counts"] = sums
    return report


def read_records(dataset: str, split: str, limit: int | None = None) -> list[dict]:
    """The first `limit` decoded clip records of a built dataset (path or `shapes_world:CONFIG`)."""
    from data_pipelines.sources import DecodeOptions, clip_decoder, open_source  # noqa: PLC0415
    from sora_jax.caption.data import resolve_caption_source  # noqa: PLC0415

    source, name = open_source(resolve_caption_source(dataset), split)
    decode = clip_decoder(name, DecodeOptions())
    count = len(source) if limit is None else min(limit, len(source))
    return [decode(source[i]) for i in range(count)]


def evaluate_captioner(model, c, dataset: str, split: str = "validation", limit: int | None = None,
                       rows: int = 4) -> dict:
    """Greedy captions of a dataset split's clips scored against their meta; examples included."""
    from sora_jax.caption.inference import ClipCaptioner, clip_patches  # noqa: PLC0415

    records = read_records(dataset, split, limit)
    captioner = ClipCaptioner(model, c, rows)
    segments = [clip_patches(record, c, i) for i, record in enumerate(records)]  # sized once for both read-outs
    captions = captioner.caption_segments(segments)
    scored = [score_caption(caption, record["meta"]) for caption, record in zip(captions, records)]
    report = summarize([counts for counts, _, _ in scored]) | {"clips": len(records), "exact_captions": float(
        np.mean([caption == record["caption"] for caption, record in zip(captions, records)]))}
    by_size, by_motion = summarize([s for _, s, _ in scored]), summarize([m for _, _, m in scored])
    report["shape_by_size"] = {size: by_size[size] for size in SIZES if size in by_size}
    report["motion_by_type"] = {motion: by_motion[motion] for motion in MOTIONS if motion in by_motion}
    report["examples"] = [{"generated": caption, "reference": record["caption"]}
                          for caption, record in zip(captions[:8], records[:8])]
    if model.config.concepts:
        probs = captioner.segment_concepts(segments)  # (N, V)
        report["concept_by_motion"] = concepts_by_motion(probs, [record["meta"] for record in records],
                                                         captioner.tokenizer)
    return report


CONCEPT_WORDS = ("stays", "moves", "bounces", "falls", "spins")


def concepts_by_motion(probs: np.ndarray, metas: list, tokenizer, words=CONCEPT_WORDS) -> dict:
    """`{word: {true motion: mean probability}}` of the word-detection head over one-object videos.

    Whether the encoder tells the motions apart, read as the head reads it (max pooling): the mean
    probability of each motion word, over the videos whose only object moves each way. `probs (N, V)`
    are `ClipCaptioner.concept_probabilities` of the clips `metas` describe; clips with several objects
    (a clip-level word cannot say which object it is about) and images are left out. Words the
    tokenizer lacks are skipped; `{}` when no one-object video is among the clips.
    """
    ids = getattr(tokenizer, "ids", {})
    by_motion: dict[str, list[int]] = {}
    for index, meta in enumerate(metas):
        truth, is_video = truth_from_meta(meta)
        if is_video and len(truth) == 1:
            by_motion.setdefault(truth[0]["motion"], []).append(index)
    order = [motion for motion in MOTIONS if motion in by_motion]
    return {word: {motion: float(probs[by_motion[motion], ids[word]].mean()) for motion in order}
            for word in words if word in ids} if order else {}


MOTION_VERBS = ("stays", "moves", "falls", "spins")


def word_class_ids(tokenizer) -> dict[str, np.ndarray]:
    """Caption-token ids of the words that carry each attribute: colours, shapes, motion verbs."""
    classes = {"colour": tuple(COLOURS), "shape": SHAPES, "motion": MOTION_VERBS}
    return {k: np.asarray([tokenizer.ids[w] for w in words if w in tokenizer.ids], np.int32) for k, words in classes.items()}


def teacher_forced_attributes(task, model, split: str = "validation", batches: int = 4) -> dict:
    """Teacher-forced accuracy of the attribute words, where each is first decided.

    Greedy agreement (`evaluate_captioner`) mixes what the model sees with how its captions go on;
    overall token accuracy hides the attribute words among the grammar. This scores the next-token
    prediction, given the true caption so far, at the colour and shape words of the listing sentence
    (the first mention; later mentions copy it) and at every motion verb. A captioner that cannot see
    shapes scores chance here (1 in 5) whatever its token accuracy. Needs the word tokenizer.
    """
    import jax  # noqa: PLC0415

    from sora_jax.caption.model import teacher_forcing_inputs  # noqa: PLC0415

    if not hasattr(task.tokenizer, "ids"):
        raise ValueError(f"teacher-forced attribute accuracy needs the word tokenizer (model.tokenizer='words'), "
                         f"this run uses {task.tokenizer.name!r}")
    ids = word_class_ids(task.tokenizer)
    period = task.tokenizer.ids["."]
    forward = jax.jit(lambda m, b, x: m.forward(b, x))
    stream = iter(task.build_input(split, task.c.global_batch_size, 0, 1))
    right, total = dict.fromkeys(ids, 0), dict.fromkeys(ids, 0)
    found, named, lucky = dict.fromkeys(ids, 0), dict.fromkeys(ids, 0), dict.fromkeys(ids, 0.0)
    for _ in range(batches):
        batch = task.host_batch(next(stream))
        targets = batch["caption_targets"]  # (B, S, T)
        logits, concepts = forward(model, batch, teacher_forcing_inputs(targets, model.decoder.bos_id))  # (B, S, T, V)
        if concepts is not None:
            concepts = np.asarray(concepts)  # (B, S, V), fetched once for every word class
            for k, class_ids in ids.items():
                held = (targets[..., None] == class_ids).any(axis=-2)  # (B, S, C) words each caption holds
                hits, words, chance = concept_hits(concepts[..., class_ids], held)
                found[k], named[k], lucky[k] = found[k] + hits, named[k] + words, lucky[k] + chance
        correct = np.asarray(logits.argmax(-1)) == targets  # (B, S, T)
        listing = np.cumsum(targets == period, axis=-1) == 0  # (B, S, T)
        for k, class_ids in ids.items():
            where = np.isin(targets, class_ids) & (listing if k != "motion" else True)
            right[k] += int(correct[where].sum())
            total[k] += int(where.sum())
    report = {k: right[k] / total[k] if total[k] else None for k in ids} | {"words": total}
    if any(named.values()):
        report |= {f"concept_{k}": found[k] / named[k] if named[k] else None for k in ids}
        report |= {f"concept_{k}_chance": lucky[k] / named[k] if named[k] else None for k in ids}
    return report


def concept_hits(scores: np.ndarray, held: np.ndarray) -> tuple[int, int, float]:
    """`(hits, words, chance)`: per caption, how many of its k held words (`held (..., C)`) are among
    the k highest `scores (..., C)`, summed over captions; the held words in all; and the hits a
    random ranking would get on average (k * k / C a caption). A caption naming two of five shapes
    gets 2/5 of its words right by chance, so multi-object captions put chance well above 1 in C."""
    ranks = np.argsort(np.argsort(-scores, axis=-1), axis=-1)  # (..., C): 0 = highest
    count = held.sum(-1, keepdims=True)  # (..., 1)
    chance = float((count.astype(np.float64) ** 2).sum() / held.shape[-1])
    return int((held & (ranks < count)).sum()), int(held.sum()), chance


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Caption accuracy of a trained captioner on held-out clips.")
    parser.add_argument("--workdir", required=True, help="the captioner's training workdir")
    parser.add_argument("--data", default=None, help="dataset directory or shapes_world[_live]:CONFIG (default: "
                        "shapes_world:tiny; with --teacher-forced, the run's own data sources)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--split", default="validation", help="validation, or test (live sources: 100,000 held-out "
                        "clips, read with --limit)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--teacher-forced", type=int, default=0, metavar="BATCHES",
                        help="instead: teacher-forced attribute-word accuracy on BATCHES batches of --data, packed as "
                        "the run packs its data")
    args = parser.parse_args(argv)
    from sora_jax.train.restore import load_trained  # noqa: PLC0415

    trained = load_trained(args.workdir, args.step)
    if args.teacher_forced:
        task = trained.task
        if args.data:  # the run's packing and tokenizer, one other source (runs on mixtures score one part)
            from sora_jax.train.tasks import make_task  # noqa: PLC0415

            config = trained.config.copy_and_resolve_references()
            with config.unlocked():
                config.data.sources, config.data.weights = [args.data], []
            task = make_task(config)
        report = teacher_forced_attributes(task, trained.model, args.split, args.teacher_forced)
        print(json.dumps({"step": trained.step, "teacher_forced": report}))
        return
    report = evaluate_captioner(trained.model, trained.config, args.data or "shapes_world:tiny", args.split, args.limit)
    print(json.dumps({"step": trained.step} | report))


if __name__ == "__main__":
    main()
