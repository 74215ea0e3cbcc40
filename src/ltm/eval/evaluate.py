"""`ltm eval`: what a trained run learned, what it memorized, and how often it shows thinking
behaviours — each next to a reference that keeps the figure honest:

- held-out bits per byte, overall and by document, author, phase and lens, against a unigram model
  and the same network untrained; WikiText-2 validation as an out-of-domain reference;
- extractable memorization (32-token prefix, greedy, exact 32-token continuation) by times seen,
  against a control model (untrained, or another run's);
- probe rates per 1,000 tokens on samples from a fixed prompt set, next to the same rates in the
  training text, and the probes' precision and recall on ltm's labelled set;
- diversity of the samples (distinct-1/2, repetition).
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from ltm.dataset.reader import load_manifest, load_segments, load_split, open_split, training_reads
from ltm.dataset.tokenizer import load_tokenizer, token_byte_lengths, tokenizer_sha256
from ltm.config import RunConfig
from ltm.eval.bpb import bits_per_byte, range_mask, token_nll, unigram_nll
from ltm.eval.diversity import diversity
from ltm.eval.memorization import extraction, loss_gap, sample_sequences, summarize
from ltm.eval.sample import continuations, sample
from ltm.formats import Baselines, EvalResult, GroupBpb, ProbeRate
from ltm.io import write_jsonl
from ltm.log import info, progress
from ltm.model.factory import load_model, new_model, pick_device
from ltm.model.numerics import eval_autocast


class EvalError(ValueError):
    pass


def load_prompts(path: str | Path | None) -> dict[str, list[str]]:
    text = Path(path).read_text(encoding="utf-8") if path else resources.files("ltm.data.prompts").joinpath("eval_prompts.yaml").read_text(encoding="utf-8")
    prompts = {lang: [str(p) for p in items or []] for lang, items in (yaml.safe_load(text) or {}).items()}
    if not any(prompts.values()):
        raise EvalError(f"{path or 'the built-in prompt set'}: no prompts; give a YAML mapping of language to a list of prompts")
    return prompts


def evaluate(config: RunConfig, dataset_dir: str | Path, checkpoint: str | Path, control: str | Path | None = None,
             qa: Path | None = None, samples_out: Path | None = None) -> EvalResult:
    """The run's evaluation; with `samples_out`, the probes' generated samples are kept there (ltm.sample/1)."""
    dataset_dir, ec = Path(dataset_dir), config.eval
    manifest = load_manifest(dataset_dir)
    tokenizer_dir = dataset_dir / manifest.tokenizer
    if tokenizer_sha256(tokenizer_dir) != manifest.tokenizer_sha256:
        raise EvalError(f"{tokenizer_dir}: tokenizer differs from the one the manifest was built with")
    tokenizer = load_tokenizer(tokenizer_dir)
    prompts = load_prompts(config.resolve(ec.prompts) if ec.prompts else None)
    device = pick_device(ec.device)
    model = load_model(checkpoint).to(device).eval()
    if model.config.vocab_size != manifest.vocab_size:
        raise EvalError(f"{checkpoint}: model vocabulary {model.config.vocab_size} != dataset vocabulary {manifest.vocab_size}: "
                        "the model and the dataset's tokenizer do not belong together")
    heldout = load_split(dataset_dir, manifest, "heldout")
    if len(heldout) < 2:
        raise EvalError(f"{dataset_dir}: the held-out split is empty")
    train_tokens = open_split(dataset_dir, manifest, "train")
    lengths = token_byte_lengths(tokenizer)
    seq_len = model.config.max_position_embeddings
    untrained = new_model(config.model, tokenizer, config.seed).to(device).eval()

    segments = load_segments(dataset_dir, "heldout")
    plain = segments["lens"] == manifest.lenses.index("plain")
    plain_mask = range_mask(len(heldout), segments["start"][plain], segments["end"][plain])
    autocast = eval_autocast(ec.precision, config.train.speed.precision, device)
    with autocast, progress(transient=True) as bar:  # the parts in order, each named while it runs
        task = bar.add_task("eval", total=8 + (qa is not None), info="held-out loss of the model")
        seconds, clock = {}, [time.perf_counter(), "held-out loss of the model"]  # where eval's time goes, for the log

        def done(next_part: str) -> None:
            now = time.perf_counter()
            seconds[clock[1]] = now - clock[0]
            clock[:] = [now, next_part]
            bar.update(task, advance=1, info=next_part)

        nll = token_nll(model, heldout, seq_len, ec.batch_size, device)
        bpb, n_tokens, n_bytes = bits_per_byte(nll, heldout, lengths, plain_mask)
        done("held-out loss of the untrained model")
        untrained_bpb = bits_per_byte(token_nll(untrained, heldout, seq_len, ec.batch_size, device), heldout, lengths, plain_mask)[0]
        unigram = bits_per_byte(unigram_nll(train_tokens.counts(manifest.vocab_size), heldout), heldout, lengths, plain_mask)[0]
        info(f"held-out bits per byte: model {bpb:.3f}, unigram {unigram:.3f}, untrained {untrained_bpb:.3f} ({n_bytes:,} bytes)")
        done("memorization")
        control_model = untrained
        if control:
            control_model = load_model(control).to(device).eval()
        windows_read = config.train.steps * config.train.batch_size  # what pretraining read (ltm.train.data)
        memorization = _memorization(model, control_model, train_tokens, dataset_dir, ec.memorization_per_bucket, config.seed,
                                     seq_len, windows_read, (heldout, segments, manifest, ec.batch_size))
        memorization["control"] = str(control) if control else "untrained"
        done("generation for the probes")
        generated, langs, asked = _generate(model, tokenizer, prompts, ec, config.seed)
        texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in generated]
        raw = [tokenizer.decode(ids) for ids in generated]  # markers kept, for the scene-structure check
        done("probes")
        probe_fields = _probes(texts, raw, langs, asked, train_tokens, manifest, dataset_dir, tokenizer, ec.data_sample_tokens, config.seed,
                               samples_out)
        if ec.judge is not None:
            from ltm.eval.judge import judge

            judge_config = ec.judge.model_copy(update={"cache_dir": str(config.resolve(ec.judge.cache_dir))})
            probe_fields["judge"] = judge(texts, langs, judge_config)
        done("WikiText")
        wikitext = _wikitext(model, tokenizer, lengths, config, device)
        done("samples")
        samples = [{"prompt": p, "text": sample(model, tokenizer, p, ec.sample_tokens, seed=config.seed)} for p in ec.samples]
        qa_result = None
        if qa is not None:
            done("questions about the fact set")
            qa_result = _qa(model, tokenizer, qa, ec, config.seed)
        done("cloze")
        cloze = _cloze(model, tokenizer, manifest, {"heldout": (heldout, segments), "train": (train_tokens, load_segments(dataset_dir, "train"))},
                       ec, config.seed)
        done("")
    info("eval took " + ", ".join(f"{part} {s:.1f} s" for part, s in seconds.items() if part))
    return EvalResult(
        model=str(checkpoint),
        heldout_bpb=bpb, heldout_tokens=n_tokens, heldout_bytes=n_bytes,
        baselines=Baselines(unigram_bpb=unigram, untrained_bpb=untrained_bpb),
        heldout_by=_groups(nll, heldout, lengths, segments, manifest),
        wikitext=wikitext,
        memorization=memorization,
        diversity=diversity(generated),
        samples=samples,
        qa=qa_result,
        cloze=cloze,
        **probe_fields,
    )


def _cloze(model, tokenizer, manifest, splits: dict[str, tuple], ec, seed: int):
    from ltm.eval.cloze import evaluate_cloze, real_texts

    plain = manifest.lenses.index("plain")
    want = 400 * ec.cloze.items  # characters of text: a few sentences per item, to draw from
    texts = {name: real_texts(tokens, segments, manifest, tokenizer, plain, want, seed) for name, (tokens, segments) in splits.items()}
    result = evaluate_cloze(model, tokenizer, texts, ec.cloze, ec.batch_size, seed)
    if not result.by_split:
        return None
    info("cloze: " + ", ".join(f"{name} text {g.accuracy:.1%} of {g.n} (chance {g.chance:.0%})" for name, g in result.by_split.items()))
    return result


def _qa(model, tokenizer, path: Path, ec, seed: int):
    from ltm.eval.qa import QAError, evaluate_qa

    if not path.exists():
        raise EvalError(f"{path}: no such QA file (eval.qa.path)")
    try:
        result = evaluate_qa(model, tokenizer, path, ec.qa, ec.batch_size, seed)
    except QAError as exc:
        raise EvalError(str(exc)) from None
    for form, groups in result.forms.items():
        info(f"QA ({form}): " + ", ".join(f"{name} people MC {g.mc:.1%} EM {g.em:.1%} (n={g.n})" for name, g in groups.items())
             + f"; chance MC {result.chance_mc:.0%}")
    return result


def _groups(nll, tokens, lengths, segments, manifest) -> dict[str, dict[str, GroupBpb]]:
    """Bits per byte by document, author and phase (plain text) and by lens."""
    plain = segments["lens"] == manifest.lenses.index("plain")
    keys = {
        "document": [manifest.docs[d] for d in segments["doc"]],
        "author": [str(manifest.doc_tags.get(manifest.docs[d], {}).get("author", "unknown")) for d in segments["doc"]],
        "phase": [str(manifest.doc_tags.get(manifest.docs[d], {}).get("phase", "untagged")) for d in segments["doc"]],
        "language": [str(manifest.doc_tags.get(manifest.docs[d], {}).get("lang", "other")) for d in segments["doc"]],
        "lens": [manifest.lenses[k] for k in segments["lens"]],
    }
    out: dict[str, dict[str, GroupBpb]] = {}
    for name, values in keys.items():
        values = np.asarray(values)
        rows_ok = np.ones(len(values), dtype=bool) if name == "lens" else plain
        out[name] = {}
        for value in dict.fromkeys(values[rows_ok]):
            rows = rows_ok & (values == value)
            mask = range_mask(len(tokens), segments["start"][rows], segments["end"][rows])
            group_bpb, _, group_bytes = bits_per_byte(nll, tokens, lengths, mask)
            out[name][str(value)] = GroupBpb(bpb=group_bpb, bytes=group_bytes)
    return out


def _wikitext(model, tokenizer, lengths, config: RunConfig, device) -> dict:
    if not config.eval.wikitext:
        return {"skipped": "eval.wikitext is not set"}
    path = config.resolve(config.eval.wikitext)
    if not path.exists():
        return {"skipped": f"{path} not found"}
    ids = np.asarray(tokenizer.encode(path.read_text(encoding="utf-8"), add_special_tokens=False)[: config.eval.wikitext_max_tokens])
    bpb, n_tokens, n_bytes = bits_per_byte(token_nll(model, ids, model.config.max_position_embeddings, config.eval.batch_size, device), ids, lengths)
    info(f"WikiText-2 validation: {bpb:.3f} bits per byte over {n_bytes:,} bytes")
    return {"bpb": bpb, "tokens": n_tokens, "bytes": n_bytes, "source": str(path)}


def _memorization(model, control, train_tokens, dataset_dir, per_bucket: int, seed: int, seq_len: int, windows_read: int,
                  heldout_part: tuple) -> dict:
    segments = load_segments(dataset_dir, "train")
    reads = training_reads(segments["start"], len(train_tokens), seq_len, windows_read)
    drawn = sample_sequences(train_tokens, segments, per_bucket, seed, reads)
    exact, matched = extraction(model, drawn.sequences)
    control_exact, control_matched = extraction(control, drawn.sequences)
    result = summarize(drawn, exact, matched, control_exact, control_matched)
    heldout, heldout_segments, manifest, batch_size = heldout_part
    lang = [str(manifest.doc_tags.get(d, {}).get("lang", "other")) for d in manifest.docs]
    result["gap_by_times_seen"] = loss_gap(model, drawn, [lang[segments["doc"][r]] for r in drawn.rows], heldout, heldout_segments,
                                           np.asarray(lang)[heldout_segments["doc"]], manifest.lenses.index("plain"), seed, batch_size)
    info(f"memorization: {result['overall']['exact']:.1%} of {len(exact)} training prefixes continued exactly "
         f"(control {result['overall']['control_exact']:.1%})")
    return result


def _generate(model, tokenizer, prompts: dict[str, list[str]], ec, seed: int) -> tuple[list[list[int]], list[str], list[str]]:
    """Continuations of every prompt (several per prompt), with their languages and prompts, all decoded together."""
    keep = model.config.max_position_embeddings // 2
    encoded, langs, asked = [], [], []
    for lang, items in prompts.items():
        for prompt in items:
            ids = ([tokenizer.bos_token_id] + tokenizer.encode(prompt, add_special_tokens=False))[-keep:]
            encoded += [ids] * ec.samples_per_prompt
            langs += [lang] * ec.samples_per_prompt
            asked += [prompt] * ec.samples_per_prompt
    return continuations(model, encoded, ec.sample_tokens, ec.temperature, 50, tokenizer.eos_token_id, seed), langs, asked


def _probes(texts, raw, langs, asked, train_tokens, manifest, dataset_dir, tokenizer, data_tokens: int, seed: int,
            samples_out: Path | None) -> dict:
    from ltm.eval.probes import rates_per_1k_tokens, valid_structure_fraction, validate
    from ltm.eval.samples import probe_counts, sample_records

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    segments = load_segments(dataset_dir, "train")
    rng = np.random.default_rng(seed)
    data_texts, data_langs, total = [], [], 0
    for row in rng.permutation(len(segments["start"])):
        if total >= data_tokens:
            break
        start, end = segments["start"][row], segments["end"][row]
        data_texts.append(tokenizer.decode(train_tokens[start:end].tolist(), skip_special_tokens=True))
        data_langs.append(str(manifest.doc_tags.get(manifest.docs[segments["doc"][row]], {}).get("lang", "en")))
        total += end - start
    records = sample_records(asked, langs, texts, raw, count)
    if samples_out is not None:
        write_jsonl(samples_out, records)
    model = probe_counts(records)
    data_rates = rates_per_1k_tokens(data_texts, data_langs, count)
    return {
        "probes": {name: ProbeRate(model_rate=m["rate"], data_rate=data_rates[name], model_events=m["events"], model_tokens=m["tokens"],
                                   model_rate_ci95=m["rate_ci95"], model_hits_in_frames=m["hits_in_frames"])
                   for name, m in model.items()},
        "probe_validation": validate(),
        "valid_scene_structure": valid_structure_fraction(raw),
    }
