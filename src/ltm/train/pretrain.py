"""`ltm train`: pretraining on a built dataset, from scratch or resumed from the last checkpoint.

The model comes from the run config (ltm.model.factory), the batches and held-out windows from the
dataset, each under its split's loss mask; ltm.train.loop runs it.
"""

from __future__ import annotations

from pathlib import Path

from ltm.config import RunConfig, TrainConfig
from ltm.dataset.reader import load_manifest, load_masked, load_split, open_split
from ltm.dataset.tokenizer import load_tokenizer, tokenizer_sha256
from ltm.log import info
from ltm.model.factory import load_model, new_model
from ltm.train import checkpoint as ckpt
from ltm.train import distributed
from ltm.train.data import NO_MASK, LossMask, ShardBatches, loss_windows
from ltm.train.loop import TrainError, fit, prepare


def train(config: RunConfig, dataset_dir: str | Path, out_dir: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Pretrain on DATASET_DIR; write OUT_DIR/metrics.jsonl, checkpoints/ and checkpoint/ (the final model).
    An OUT_DIR that holds an earlier run is refused unless the run `resume`s it or may `overwrite` it:
    a fresh run's checkpoints mixed with older ones would be pruned by step number, and a later
    resume would pick the wrong run."""
    out_dir, tc = Path(out_dir), config.train
    world = distributed.setup(tc.device)
    try:
        if not resume and (earlier := ckpt.earlier_run(out_dir)):
            if not overwrite:
                raise TrainError(f"{out_dir} holds an earlier run ({', '.join(earlier)}): pass --resume to continue it, "
                                 "or --overwrite to delete it and start again")
            if world.main:
                ckpt.clear_run(out_dir)
                info(f"{out_dir}: the earlier run's {', '.join(earlier)} deleted (--overwrite)")
            distributed.barrier(world)
        manifest = load_manifest(dataset_dir)
        tokenizer = load_tokenizer(Path(dataset_dir) / manifest.tokenizer)
        if tokenizer_sha256(Path(dataset_dir) / manifest.tokenizer) != manifest.tokenizer_sha256:
            raise TrainError(f"{dataset_dir}: the tokenizer folder differs from the one the shards were built with")
        fingerprint = ckpt.fingerprint(config, manifest)
        model, start, state = new_model(config.model, tokenizer, config.seed), 0, None
        if resume:
            found = ckpt.latest(out_dir)
            if found is None:
                raise TrainError(f"--resume: no checkpoint under {out_dir / 'checkpoints'}")
            meta, state = ckpt.read_state(found)
            if meta["fingerprint"] != fingerprint:
                raise TrainError(f"--resume: {found} was written by a different config or dataset (fingerprint "
                                 f"{meta['fingerprint']} != {fingerprint}); resume with the config it was started with")
            if not meta.get("sharded"):  # a sharded checkpoint's weights are loaded once the model is wrapped
                model = load_model(found)
            start = meta["step"]
            info(f"resuming from {found} at step {start}")
        batches, windows = dataset_batches(dataset_dir, manifest, model.config.max_position_embeddings, tc, world)
        fit(prepare(model, tokenizer, tc, batches, windows, out_dir, world, start=start, state=state,
                    fingerprint=fingerprint, name=config.name))
    finally:
        distributed.teardown(world)
    return out_dir / "checkpoint"


def shard_batches(tokens, seq_len: int, tc: TrainConfig, world, source, mask: LossMask = NO_MASK) -> ShardBatches:
    micro = tc.micro_batch_size or max(tc.batch_size // world.size, 1)
    try:
        return ShardBatches(tokens, seq_len, tc.batch_size, micro, world.rank, world.size, mask)
    except ValueError as exc:
        raise TrainError(f"{source}: {exc}") from None


def dataset_batches(dataset_dir: str | Path, manifest, seq_len: int, tc: TrainConfig, world) -> tuple[ShardBatches, list]:
    """A built dataset's training batches and held-out loss windows, each under the split's loss mask."""
    batches = shard_batches(open_split(dataset_dir, manifest, "train"), seq_len, tc, world, dataset_dir,
                            LossMask(*load_masked(dataset_dir, "train")))
    windows = loss_windows(load_split(dataset_dir, manifest, "heldout"), seq_len, tc.eval_batches * tc.batch_size,
                           LossMask(*load_masked(dataset_dir, "heldout")))
    return batches, windows
