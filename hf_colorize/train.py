"""`hf-colorize train`: train or fine-tune a colorizer with Accelerate on a streamed dataset.

Read top to bottom: arguments, model and prior, optimizer and schedule, resume, the loop, checkpoints,
export. One process on a laptop CPU; the same file under `accelerate launch` / `torchrun` for many
GPUs or machines (data parallel; each rank streams a disjoint share of the data).

Checkpoints are `accelerator.save_state` folders written under a temporary name and renamed when
complete, plus JSON for the step counter and each rank's stream position (no pickle of our own), so a
killed run resumes exactly where its last checkpoint left it.
"""

import json
import math
import os
import shutil
import sys
import time
from contextlib import nullcontext

CHECKPOINT_PREFIX = "checkpoint-"


def add_arguments(parser):
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", required=True, help="image folder, parquet shards (folder or glob) or Hub dataset id")
    data.add_argument("--split", default="train")
    data.add_argument("--image-column", default="image")
    data.add_argument("--eval-dataset", default=None, help="held-out source (default: --dataset with --eval-split)")
    data.add_argument("--eval-split", default=None, help="held-out split, e.g. test (no periodic eval if neither is set)")
    data.add_argument("--eval-images", type=int, default=64, help="held-out images per evaluation")
    data.add_argument("--crop-size", type=int, default=176, help="random-resized-crop side (multiple of 8)")
    data.add_argument("--shuffle-buffer", type=int, default=512)
    model = parser.add_argument_group("model")
    model.add_argument("--init-from", default=None, help="fine-tune from this model (folder or Hub id)")
    model.add_argument("--width", type=float, default=0.25, help="width multiplier (1.0 = the paper's 32.2M-parameter net)")
    model.add_argument("--norm", default="batch", choices=["batch", "group", "none"])
    model.add_argument("--bins", default=None, help="k-means palette from `hf-colorize fit-palette` (default: 313 ECCV16 bins)")
    model.add_argument("--loss", default="rebalanced_ce", choices=["rebalanced_ce", "ce", "focal"])
    model.add_argument("--focal-gamma", type=float, default=2.0)
    model.add_argument("--prior", default=None, help="bin prior from `hf-colorize estimate-prior` (default: estimated from the stream)")
    model.add_argument("--prior-images", type=int, default=500, help="images used to estimate the prior when --prior is not given")
    model.add_argument("--rebalance-lambda", type=float, default=0.5)
    optim = parser.add_argument_group("optimization")
    optim.add_argument("--max-steps", type=int, default=1000)
    optim.add_argument("--batch-size", type=int, default=16, help="per process")
    optim.add_argument("--grad-accum", type=int, default=1)
    optim.add_argument("--lr", type=float, default=3e-4)
    optim.add_argument("--min-lr-ratio", type=float, default=0.05, help="final LR as a fraction of --lr (cosine)")
    optim.add_argument("--lr-schedule", default="cosine", choices=["cosine", "linear", "constant"])
    optim.add_argument("--warmup-steps", type=int, default=100)
    optim.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.99), help="Adam betas (the paper's)")
    optim.add_argument("--weight-decay", type=float, default=1e-3, help="the paper's")
    optim.add_argument("--max-grad-norm", type=float, default=5.0)
    optim.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    optim.add_argument("--seed", type=int, default=0)
    optim.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--output-dir", required=True)
    run_group.add_argument("--checkpoint-every", type=int, default=200)
    run_group.add_argument("--checkpoints-total-limit", type=int, default=3)
    run_group.add_argument("--eval-every", type=int, default=200)
    run_group.add_argument("--log-every", type=int, default=10)
    run_group.add_argument("--report-to", default="tensorboard", choices=["tensorboard", "none"])
    run_group.add_argument("--no-resume", action="store_true", help="start fresh even if the output dir has checkpoints")
    run_group.add_argument("--resume-from", default=None, help="a specific checkpoint folder (default: the latest)")
    run_group.add_argument("--export-size", type=int, default=256, help="network input size of the exported image processor")
    run_group.add_argument("--push-to-hub", action="store_true")
    run_group.add_argument("--hub-model-id", default=None)
    run_group.add_argument("--hub-private", action="store_true")
    run_group.add_argument("--log-samples", default=None, help="append every training sample key of this rank to FILE.rankN (tests)")
    run_group.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    try:
        train(args)
    except TrainingError as err:
        print(f"hf-colorize: error: {err}", file=sys.stderr)
        return 1
    return 0


class TrainingError(RuntimeError):
    """A problem that stops training; one line for the user (checkpoints already written are kept)."""


# --------------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------------
def list_checkpoints(output_dir):
    """Complete checkpoints in `output_dir/checkpoints`, oldest first (temporary folders ignored)."""
    root = os.path.join(output_dir, "checkpoints")
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name.startswith(CHECKPOINT_PREFIX) and name[len(CHECKPOINT_PREFIX):].isdigit() \
                and os.path.isfile(os.path.join(path, "trainer_state.json")):
            found.append((int(name[len(CHECKPOINT_PREFIX):]), path))
    return [p for _, p in sorted(found)]


def save_checkpoint(accelerator, output_dir, step, streams_state, limit):
    """Write checkpoint `step` atomically (tmp folder, then rename) and keep the newest `limit`."""
    root = os.path.join(output_dir, "checkpoints")
    final = os.path.join(root, f"{CHECKPOINT_PREFIX}{step}")
    tmp = os.path.join(root, f".tmp-{CHECKPOINT_PREFIX}{step}")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp, exist_ok=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(tmp, safe_serialization=True)
        with open(os.path.join(tmp, f"stream_state_{accelerator.process_index}.json"), "w") as f:
            json.dump(streams_state, f)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            with open(os.path.join(tmp, "trainer_state.json"), "w") as f:
                json.dump({"step": step, "num_processes": accelerator.num_processes}, f)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in list_checkpoints(output_dir)[:-limit] if limit > 0 else []:
                shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        kept = list_checkpoints(output_dir)
        raise TrainingError(
            f"checkpoint at step {step} failed ({err.strerror or err}); "
            + (f"latest complete checkpoint kept: {kept[-1]}" if kept else "no earlier checkpoint")
        ) from None
    accelerator.wait_for_everyone()
    return final


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------
def lr_lambda(args):
    def schedule(step):
        if step < args.warmup_steps:
            return (step + 1) / max(1, args.warmup_steps)
        if args.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if args.lr_schedule == "cosine" else 1 - progress
        return args.min_lr_ratio + (1 - args.min_lr_ratio) * decay

    return schedule


def build_model(args):
    import torch

    from .configuration_colorization import ColorizationConfig
    from .modeling_colorization import ColorizationModel
    from .palette import load_palette

    if args.init_from:
        model = ColorizationModel.from_pretrained(args.init_from)
        model.config.loss_type = args.loss
        model.config.focal_gamma = args.focal_gamma
        model.config.rebalance_lambda = args.rebalance_lambda
        args.width, args.norm = model.config.width_multiplier, model.config.norm_type  # recorded as trained
        return model
    bins = load_palette(args.bins).tolist() if args.bins else None
    config = ColorizationConfig(width_multiplier=args.width, norm_type=args.norm, ab_bins=bins, loss_type=args.loss,
                                focal_gamma=args.focal_gamma, rebalance_lambda=args.rebalance_lambda)
    torch.manual_seed(args.seed)  # identical initial weights on every rank
    return ColorizationModel(config)


def evaluate(model, args, accelerator, device):
    """Mean loss and mean ab error on the first `--eval-images` held-out images (centre crops)."""
    import torch

    from .data import ColorizationStream, batches, lab_batch

    source = args.eval_dataset or args.dataset
    stream = ColorizationStream(source, args.eval_split or args.split, args.image_column, crop_size=args.crop_size,
                                train=False)
    model.eval()
    losses, errs, n = [], [], 0
    with torch.inference_mode():
        for batch in batches(iter(stream), args.batch_size):
            pixel_values, labels = lab_batch(batch["rgb"])
            out = model(pixel_values=pixel_values.to(device), labels=labels.to(device))
            ab_true = torch.nn.functional.adaptive_avg_pool2d(labels.to(device), out.ab.shape[-2:])
            losses.append(out.loss.item())
            errs.append((out.ab - ab_true).pow(2).sum(1).sqrt().mean().item())
            n += batch["rgb"].shape[0]
            if n >= args.eval_images:
                break
    model.train()
    if not losses:
        return {}
    return {"eval/loss": sum(losses) / len(losses), "eval/ab_error": sum(errs) / len(errs), "eval/images": n}


def train(args):
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from .data import ColorizationStream, DataSourceError, batches, lab_batch
    from .image_processing_colorization import ColorizationImageProcessor
    from .priors import estimate_prior, load_prior

    if args.crop_size % 8:
        raise TrainingError(f"--crop-size must be a multiple of 8, got {args.crop_size}")
    has_accelerator = torch.cuda.is_available() or torch.backends.mps.is_available() or (
        hasattr(torch, "xpu") and torch.xpu.is_available())
    accelerator = Accelerator(
        cpu=args.cpu or not has_accelerator,  # without it, torchrun on CPUs would not form a gloo process group
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_dir=args.output_dir,
        step_scheduler_with_optimizer=False,  # our schedule counts optimizer steps, whatever the world size
    )
    set_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    device = accelerator.device

    # model, streamed data, prior -------------------------------------------------------------------
    try:
        model = build_model(args)
        stream = ColorizationStream(args.dataset, args.split, args.image_column, crop_size=args.crop_size,
                                    seed=args.seed, rank=accelerator.process_index,
                                    world_size=accelerator.num_processes, shuffle_buffer=args.shuffle_buffer)
    except (DataSourceError, ValueError, OSError) as err:
        raise TrainingError(str(err)) from None

    checkpoints = [] if args.no_resume else list_checkpoints(args.output_dir)
    resume_dir = args.resume_from or (checkpoints[-1] if checkpoints else None)
    if resume_dir is None and args.loss == "rebalanced_ce":
        try:
            if args.prior:
                prior = load_prior(args.prior, model.ab_bins)
            else:  # every rank estimates from the same unshuffled head of the stream: identical priors
                head = ColorizationStream(args.dataset, args.split, args.image_column, crop_size=args.crop_size, train=False)
                prior = estimate_prior((b["rgb"] for b in batches(iter(head), 32)), model.ab_bins.cpu(),
                                       sigma=model.config.prior_sigma, max_images=args.prior_images)
        except (DataSourceError, ValueError, OSError) as err:
            raise TrainingError(f"bin prior: {err}") from None
        model.set_bin_prior(prior)

    model = model.to(memory_format=torch.channels_last)  # faster convolutions on CPU (oneDNN) and recent GPUs
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=tuple(args.betas), weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(args))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    step = 0
    if resume_dir:
        state_file = os.path.join(resume_dir, "trainer_state.json")
        if not os.path.isfile(state_file):
            raise TrainingError(f"{resume_dir}: not a complete checkpoint (no trainer_state.json)")
        try:
            accelerator.load_state(resume_dir)
        except Exception as err:  # corrupt/foreign checkpoint: say which, keep the folder for inspection
            msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TrainingError(f"{resume_dir}: cannot resume from this checkpoint ({msg}); "
                                "use --resume-from another checkpoint or --no-resume") from None
        with open(state_file) as f:
            step = json.load(f)["step"]  # load_state() does not restore accelerate's own counter; ours is here
        rank_state = os.path.join(resume_dir, f"stream_state_{accelerator.process_index}.json")
        if os.path.isfile(rank_state):
            with open(rank_state) as f:
                stream.load_state_dict(json.load(f))
        accelerator.print(f"resumed from {resume_dir} at step {step}")

    if accelerator.is_main_process and args.report_to != "none":
        accelerator.init_trackers("hf-colorize", config={k: v for k, v in vars(args).items()
                                                         if isinstance(v, (int, float, str, bool))})
    sample_log = open(f"{args.log_samples}.rank{accelerator.process_index}", "a") if args.log_samples else None

    # the loop ----------------------------------------------------------------------------------------
    unwrapped = accelerator.unwrap_model(model)
    model.train()
    data = batches(iter(stream), args.batch_size)
    bar = tqdm(total=args.max_steps, initial=step, desc="train", disable=args.no_progress or not accelerator.is_main_process)
    t0, seen = time.time(), 0
    try:
        while step < args.max_steps:
            loss_sum = 0.0
            for micro in range(args.grad_accum):
                try:
                    batch = next(data)
                except DataSourceError as err:
                    raise TrainingError(str(err)) from None
                if sample_log:
                    sample_log.write("\n".join(batch["keys"]) + "\n")
                pixel_values, labels = lab_batch(batch["rgb"])
                pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
                sync = accelerator.no_sync(model) if micro < args.grad_accum - 1 else nullcontext()
                with sync, accelerator.autocast():
                    loss = model(pixel_values=pixel_values.to(device), labels=labels.to(device)).loss / args.grad_accum
                accelerator.backward(loss)
                loss_sum += loss.item()
                seen += batch["rgb"].shape[0]
            if args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            if step % args.log_every == 0 or step == args.max_steps:
                rate = seen / max(1e-9, time.time() - t0)
                logs = {"train/loss": loss_sum, "train/lr": scheduler.get_last_lr()[0], "train/images_per_s": rate}
                logs.update({f"data/{k}": v for k, v in stream.stats.as_dict().items()})
                bar.set_postfix(loss=f"{loss_sum:.3f}", img_s=f"{rate:.1f}")
                if args.no_progress:
                    accelerator.print(f"step {step}: loss={loss_sum:.4f} lr={logs['train/lr']:.3g} images/s={rate:.1f}", flush=True)
                accelerator.log(logs, step=step)
            if (args.eval_split or args.eval_dataset) and args.eval_every and step % args.eval_every == 0:
                if accelerator.is_main_process:
                    metrics = evaluate(unwrapped, args, accelerator, device)
                    accelerator.log(metrics, step=step)
                    bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
                accelerator.wait_for_everyone()
            if args.checkpoint_every and (step % args.checkpoint_every == 0 or step == args.max_steps):
                save_checkpoint(accelerator, args.output_dir, step, stream.state_dict(), args.checkpoints_total_limit)
    finally:
        bar.close()
        if sample_log:
            sample_log.close()
    if args.log_samples:  # per-rank weight fingerprint: data-parallel ranks must end identical
        with torch.no_grad():
            fingerprint = {"step": step, "checksum": float(sum(p.double().sum() for p in unwrapped.parameters())),
                           "abs_sum": float(sum(p.double().abs().sum() for p in unwrapped.parameters()))}
        with open(f"{args.log_samples}.rank{accelerator.process_index}.json", "w") as f:
            json.dump(fingerprint, f)

    # export ------------------------------------------------------------------------------------------
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final_dir = os.path.join(args.output_dir, "final")
        tmp = final_dir + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        unwrapped.config.image_size = args.export_size  # config and processor agree on the input size
        unwrapped.save_pretrained(tmp, safe_serialization=True)
        ColorizationImageProcessor(size=args.export_size).save_pretrained(tmp)
        with open(os.path.join(tmp, "training_args.json"), "w") as f:
            json.dump({k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, list, tuple, type(None)))}, f, indent=2)
        shutil.rmtree(final_dir, ignore_errors=True)
        os.replace(tmp, final_dir)
        accelerator.print(f"exported {final_dir}; stream: {stream.stats.as_dict()}")
        if args.push_to_hub:
            if not args.hub_model_id:
                raise TrainingError("--push-to-hub needs --hub-model-id")
            from .hub import HubPushError, push_to_hub

            try:
                push_to_hub(final_dir, args.hub_model_id, private=args.hub_private)
            except HubPushError as err:
                raise TrainingError(f"training finished and {final_dir} is saved, but the push failed: {err}") from None
    accelerator.end_training()
    return os.path.join(args.output_dir, "final")
