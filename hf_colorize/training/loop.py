"""The trainer (`hf-colorize train`): train or fine-tune a colorizer with Accelerate on a streamed dataset.

Read top to bottom: the configuration and its checks, checkpoints, model and prior, the loop, export.
One process on a laptop CPU; the same code under `accelerate launch` / `torchrun` for many GPUs or
machines (data parallel; each rank streams a disjoint share of the data).

    from hf_colorize.training.loop import TrainingConfig, train
    train(TrainingConfig(dataset="packed/", output_dir="runs/mine", max_steps=500))   # -> "runs/mine/final"
    train(dataset="packed/", output_dir="runs/mine", max_steps=500)                   # the same

Checkpoints are `accelerator.save_state` folders written under a temporary name and renamed when
complete (`common.atomic_path`), plus JSON for the step counter and each rank's stream position (no
pickle of our own), so a killed run resumes exactly where its last checkpoint left it. Failures raise
`ColorizeError` subclasses with one line: `UsageError` for a bad setting (found before any work),
`DataSourceError`, `ModelLoadError`, `TrainingError`, `HubError`.
"""

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from typing import Optional, Tuple

from hf_colorize.common import (
    ColorizeError,
    DataSourceError,
    ModelLoadError,
    TrainingError,
    UsageError,
    atomic_path,
    one_line,
    shown,
    sweep_temporaries,
)

__all__ = ["TrainingConfig", "TrainingError", "check_config", "train", "list_checkpoints", "save_checkpoint",
           "CHECKPOINT_PREFIX"]

CHECKPOINT_PREFIX = "checkpoint-"
LOSSES = ("rebalanced_ce", "ce", "focal")
ARCHITECTURES = ("eccv16", "hypercolumn")
COLOR_SPACES = ("lab", "hue-chroma")
LAB_HISTOGRAMS = ("marginal", "joint")
# settings that belong to one architecture: giving one a non-default value for the other is an error
ECCV16_ONLY = ("bins", "loss", "focal_gamma", "prior", "prior_images", "rebalance_lambda", "hints", "hint_lr_scale")
HYPERCOLUMN_ONLY = ("color_space", "lab_histogram", "hypercolumn_layers", "hidden_size", "fc_channels", "sample_pixels",
                    "init_backbone")
NORMS = ("batch", "group", "none")
MAX_WORKERS = 64  # data workers per process: beyond any machine's use, and each holds a decode buffer
LR_SCHEDULES = ("cosine", "linear", "constant")
MIXED_PRECISIONS = ("no", "fp16", "bf16")
REPORTERS = ("tensorboard", "none")
HINT_KINDS = ("both", "local", "global")  # --hints: which simulated hints (and hint inputs) to train


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TrainingConfig:
    """Every setting of a training run; the defaults are `hf-colorize train`'s (its flags have these names
    with dashes). Recorded in the exported model's `training_args.json`."""

    # data
    dataset: Optional[str] = None  # image folder, parquet shards (folder or glob) or Hub dataset id
    split: str = "train"
    image_column: str = "image"
    eval_dataset: Optional[str] = None  # held-out source (default: `dataset` with `eval_split`)
    eval_split: Optional[str] = None  # held-out split (no periodic evaluation if neither is set)
    eval_images: int = 64
    crop_size: int = 176  # random-resized-crop side, a multiple of 8
    shuffle_buffer: int = 512
    # DataLoader worker processes that decode and crop (0: in this process); the stream is the same for
    # any number (training/data.py), so this changes speed only: benchmarks/train_input_benchmark.py
    num_workers: int = 1
    # model
    architecture: str = "eccv16"  # or "hypercolumn" (Larsson et al.)
    init_from: Optional[str] = None  # fine-tune this model (folder or Hub id)
    width: float = 0.25  # width multiplier (1.0 = the paper's network: ECCV16 32.2M, VGG-16 hypercolumn 144M)
    norm: str = "batch"
    bins: Optional[str] = None  # k-means palette from `fit-palette` (default: the 313 ECCV16 bins)
    loss: str = "rebalanced_ce"
    focal_gamma: float = 2.0
    prior: Optional[str] = None  # bin prior from `estimate-prior` (default: estimated from the stream)
    prior_images: int = 500
    rebalance_lambda: float = 0.5
    # simulated user hints (SIGGRAPH 2017 recipe, `training/hints.py`): None = off, or "both" (local point
    # hints and the global colour distribution), "local" or "global"; the model gets those inputs
    hints: Optional[str] = None
    # the hint layers' learning rate is --lr times this: they start at zero inside a trained trunk and
    # must catch up with it (at 1x a short fine-tune barely moved them: docs/guidance.md)
    hint_lr_scale: float = 10.0
    # hypercolumn architecture only
    color_space: str = "lab"  # or "hue-chroma"
    lab_histogram: str = "marginal"  # or "joint"
    hypercolumn_layers: Optional[Tuple[str, ...]] = None  # default the paper's seven
    hidden_size: int = 1024
    fc_channels: int = 4096  # fc6/fc7 before --width (VGG-16's 4096)
    sample_pixels: int = 128  # hypercolumns per image and step (sparse training)
    init_backbone: Optional[str] = None  # torchvision VGG-16 weights (safetensors or weights-only torch file)
    # optimization
    max_steps: int = 1000
    batch_size: int = 16  # per process
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr_ratio: float = 0.05
    lr_schedule: str = "cosine"
    warmup_steps: int = 100
    betas: Tuple[float, float] = (0.9, 0.99)  # the paper's
    weight_decay: float = 1e-3  # the paper's
    max_grad_norm: float = 5.0  # 0: no clipping
    mixed_precision: str = "no"
    seed: int = 0
    cpu: bool = False
    # run
    output_dir: Optional[str] = None
    checkpoint_every: int = 200  # 0: no checkpoints
    checkpoints_total_limit: int = 3  # 0: keep all
    eval_every: int = 200
    log_every: int = 10
    report_to: str = "tensorboard"
    no_resume: bool = False
    resume_from: Optional[str] = None  # a checkpoint folder (default: the latest in output_dir)
    export_size: int = 256  # network input side of the exported model (config and image processor)
    push_to_hub: bool = False
    hub_model_id: Optional[str] = None
    hub_private: bool = False
    log_samples: Optional[str] = None  # append every sample key of rank N to FILE.rankN (tests)
    progress: Optional[bool] = None  # a tqdm bar (None: only when stderr is a terminal); else "step" lines

    @classmethod
    def from_args(cls, args=None, **overrides) -> "TrainingConfig":
        """A config from an argparse namespace, a dict, another config or keyword arguments (unknown
        names raise `UsageError`; other attributes of a namespace are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        if args is None:
            values = {}
        elif isinstance(args, cls):
            values = dataclasses.asdict(args)
        elif isinstance(args, dict):
            unknown = sorted(set(args) - names)
            if unknown:
                raise UsageError(f"unknown training setting(s): {', '.join(unknown)}")
            values = dict(args)
        else:  # a namespace: take the settings it has
            values = {k: v for k, v in vars(args).items() if k in names}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise UsageError(f"unknown training setting(s): {', '.join(unknown)}")
        values.update(overrides)
        for name in ("betas", "hypercolumn_layers"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return cls(**values)

    def to_json_dict(self) -> dict:
        """The settings as JSON values (what `training_args.json` records)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
                if k != "progress"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_config(config: TrainingConfig) -> None:
    """Every check that needs no data, model or network, so a bad setting fails in a second, before
    anything is written: `UsageError` (exit code 2) naming the flag; `HubError` when `push_to_hub` is
    set but nothing could be uploaded at the end (offline, no token)."""
    c = config
    for name in ("dataset", "output_dir"):
        if not getattr(c, name):
            raise UsageError(f"{_flag(name)} is required")
    choices = {"architecture": ARCHITECTURES, "loss": LOSSES, "norm": NORMS, "lr_schedule": LR_SCHEDULES,
               "mixed_precision": MIXED_PRECISIONS, "report_to": REPORTERS, "color_space": COLOR_SPACES,
               "lab_histogram": LAB_HISTOGRAMS}
    for name, allowed in choices.items():
        if getattr(c, name) not in allowed:
            raise UsageError(f"{_flag(name)} must be one of {', '.join(allowed)}, got {getattr(c, name)!r}")
    if c.hints is not None and c.hints not in HINT_KINDS:
        raise UsageError(f"--hints must be one of {', '.join(HINT_KINDS)}, got {c.hints!r}")
    if isinstance(c.hint_lr_scale, bool) or not isinstance(c.hint_lr_scale, (int, float)) or not c.hint_lr_scale > 0:
        raise UsageError(f"--hint-lr-scale must be a number > 0, got {c.hint_lr_scale!r}")
    if c.hints is None and c.hint_lr_scale != TrainingConfig.hint_lr_scale:
        raise UsageError("--hint-lr-scale applies to the hint layers: add --hints")
    for name in ("crop_size", "export_size"):
        value = getattr(c, name)
        if not isinstance(value, int) or value < 8 or value % 8:
            raise UsageError(f"{_flag(name)} must be a positive multiple of 8 (the network's total stride), got {value}")
    defaults = TrainingConfig()
    other = ECCV16_ONLY if c.architecture == "hypercolumn" else HYPERCOLUMN_ONLY
    for name in other:
        if getattr(c, name) != getattr(defaults, name) and not c.init_from:
            raise UsageError(f"{_flag(name)} applies to --architecture {'eccv16' if name in ECCV16_ONLY else 'hypercolumn'}, "
                             f"not {c.architecture}")
    if c.hypercolumn_layers is not None:
        from hf_colorize.models.colorization.configuration_hypercolumn import HYPERCOLUMN_LAYERS

        bad = [layer for layer in c.hypercolumn_layers if layer not in HYPERCOLUMN_LAYERS]
        if bad or not c.hypercolumn_layers:
            raise UsageError(f"--hypercolumn-layers must name layers of {', '.join(HYPERCOLUMN_LAYERS)}, got "
                             f"{', '.join(c.hypercolumn_layers) or 'none'}")
    if c.init_backbone and not os.path.isfile(c.init_backbone):
        raise UsageError(f"--init-backbone {shown(c.init_backbone)}: "
                         + ("not a file" if os.path.exists(c.init_backbone) else "no such file"))
    if c.init_backbone and c.init_from:
        raise UsageError("--init-backbone and --init-from contradict each other (the model already has a trunk)")
    for name in ("eval_images", "prior_images", "max_steps", "batch_size", "grad_accum", "log_every", "hidden_size",
                 "fc_channels", "sample_pixels"):
        if getattr(c, name) < 1:
            raise UsageError(f"{_flag(name)} must be >= 1, got {getattr(c, name)}")
    if isinstance(c.num_workers, bool) or not isinstance(c.num_workers, int) or not 0 <= c.num_workers <= MAX_WORKERS:
        raise UsageError(f"--num-workers must be an integer in 0..{MAX_WORKERS}, got {c.num_workers!r}")
    for name in ("shuffle_buffer", "warmup_steps", "seed", "checkpoint_every", "checkpoints_total_limit", "eval_every"):
        if getattr(c, name) < 0:
            raise UsageError(f"{_flag(name)} must be >= 0, got {getattr(c, name)}")
    for name in ("width", "lr"):
        if not 0 < getattr(c, name) < math.inf:
            raise UsageError(f"{_flag(name)} must be a finite number > 0, got {getattr(c, name)}")
    for name in ("focal_gamma", "weight_decay", "max_grad_norm"):
        if not 0 <= getattr(c, name) < math.inf:
            raise UsageError(f"{_flag(name)} must be a finite number >= 0, got {getattr(c, name)}")
    for name in ("rebalance_lambda", "min_lr_ratio"):
        if not 0 <= getattr(c, name) <= 1:
            raise UsageError(f"{_flag(name)} must be in [0, 1], got {getattr(c, name)}")
    if len(c.betas) != 2 or not all(0 <= b < 1 for b in c.betas):
        raise UsageError(f"--betas must be two numbers in [0, 1), got {' '.join(map(str, c.betas))}")
    if os.path.exists(c.output_dir) and not os.path.isdir(c.output_dir):
        raise UsageError(f"--output-dir {shown(c.output_dir)}: exists and is not a folder")
    for name in ("prior", "bins"):
        path = getattr(c, name)
        if path and not os.path.isfile(path):
            raise UsageError(f"{_flag(name)} {shown(path)}: " + ("not a file" if os.path.exists(path) else "no such file"))
    if c.init_from and os.path.exists(c.init_from) and not os.path.isfile(os.path.join(c.init_from, "config.json")):
        raise UsageError(f"--init-from {shown(c.init_from)}: not a model folder (no config.json)")
    if c.resume_from and not os.path.isfile(os.path.join(c.resume_from, "trainer_state.json")):
        raise UsageError(f"--resume-from {shown(c.resume_from)}: not a complete checkpoint (no trainer_state.json)")
    if c.resume_from and c.no_resume:
        raise UsageError("--resume-from and --no-resume contradict each other")
    if c.push_to_hub:
        from hf_colorize.hub.push import check_can_push, validate_repo_id

        if not c.hub_model_id:
            raise UsageError("--push-to-hub needs --hub-model-id USER/NAME")
        validate_repo_id(c.hub_model_id, flag="--hub-model-id")
        check_can_push()  # offline or no token: say so now, not after hours of training


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


def _discard(path) -> None:
    """Remove a folder without ever leaving it half-deleted under its own name: rename it to a hidden
    temporary first (swept by `remove_stale_folders` if a kill lands during the deletion)."""
    folder, name = os.path.split(path)
    doomed = os.path.join(folder, f".{name}.{os.getpid()}.discarded.part")
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _shared_path(accelerator, path: Optional[str]) -> str:
    """The main process's `path` on every rank (a byte tensor broadcast: no pickle)."""
    if accelerator.num_processes == 1:
        return path
    import torch
    from accelerate.utils import broadcast

    buf = torch.zeros(4096, dtype=torch.uint8, device=accelerator.device)
    if accelerator.is_main_process:
        data = os.fsencode(path)
        buf[:len(data)] = torch.tensor(list(data), dtype=torch.uint8)
    buf = broadcast(buf, from_process=0)
    return os.fsdecode(bytes(b for b in buf.cpu().tolist() if b))


def save_checkpoint(accelerator, output_dir, step, streams_state, limit):
    """Write checkpoint `step` atomically and keep the newest `limit` (0: all). The main process writes
    into a temporary folder from `common.atomic_path` whose name every rank receives; the folder gets its
    final name only after every rank's files and `trainer_state.json` (the completeness marker) are in."""
    root = os.path.join(output_dir, "checkpoints")
    final = os.path.join(root, f"{CHECKPOINT_PREFIX}{step}")
    main = accelerator.is_main_process
    try:
        if main:
            os.makedirs(root, exist_ok=True)
        with (atomic_path(final) if main else nullcontext()) as tmp:
            if main:
                os.makedirs(tmp)
            tmp = _shared_path(accelerator, tmp)  # also a barrier: the folder exists before anyone writes
            accelerator.save_state(tmp, safe_serialization=True)
            with open(os.path.join(tmp, f"stream_state_{accelerator.process_index}.json"), "w") as f:
                json.dump(streams_state, f)
            accelerator.wait_for_everyone()
            if main:
                with open(os.path.join(tmp, "trainer_state.json"), "w") as f:
                    json.dump({"step": step, "num_processes": accelerator.num_processes}, f)
                if os.path.isdir(final):  # re-reaching a step after --resume-from an older checkpoint
                    _discard(final)
        if main:
            for old in list_checkpoints(output_dir)[:-limit] if limit > 0 else []:
                _discard(old)
    except OSError as err:
        kept = list_checkpoints(output_dir)
        raise TrainingError(
            f"checkpoint at step {step} failed ({err.strerror or one_line(err)}); "
            + (f"latest complete checkpoint kept: {kept[-1]}" if kept else "no earlier checkpoint")
        ) from None
    accelerator.wait_for_everyone()
    return final


# --------------------------------------------------------------------------------------------------
# model, schedule, evaluation
# --------------------------------------------------------------------------------------------------
def lr_lambda(config):
    def schedule(step):
        if step < config.warmup_steps:
            return (step + 1) / max(1, config.warmup_steps)
        if config.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if config.lr_schedule == "cosine" else 1 - progress
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * decay

    return schedule


def _check_init_from(config, model_config, family: str) -> None:
    """`UsageError` for a flag given (not at its default) that contradicts the `--init-from` model: one of
    the other architecture's, or an architecture setting of this one that the model has otherwise."""
    defaults = TrainingConfig()
    other = ECCV16_ONLY if family == "hypercolumn" else HYPERCOLUMN_ONLY
    for name in other:
        if getattr(config, name) != getattr(defaults, name):
            raise UsageError(f"{_flag(name)} applies to --architecture {'hypercolumn' if family == 'eccv16' else 'eccv16'}, "
                             f"but the --init-from model is {family}")
    if family == "hypercolumn":
        as_list = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731 - layers: tuple vs list
        for name in ("color_space", "lab_histogram", "hidden_size", "fc_channels", "hypercolumn_layers"):
            given, has = getattr(config, name), getattr(model_config, name)
            if given != getattr(defaults, name) and as_list(given) != as_list(has):
                raise UsageError(f"{_flag(name)} {given} contradicts the --init-from model's {has}")


def _hint_inputs_wanted(config) -> tuple:
    """(local, global) hint inputs that `config.hints` trains."""
    return config.hints in ("both", "local"), config.hints in ("both", "global")


def _grow_for_hints(config, model):
    """The `--init-from` ECCV16 `model` with the hint inputs `--hints` trains: a plain model grows them
    (`ColorizationModel.from_plain`: zero-initialized, outputs unchanged until trained); `UsageError` when
    the flags and the model's hint inputs contradict each other."""
    from hf_colorize.models.colorization.modeling_colorization import ColorizationModel

    has = (model.config.hint_inputs, model.config.global_hints)
    if config.hints is None:
        if any(has):
            raise UsageError("the --init-from model takes hints (config.hint_inputs/global_hints); add --hints "
                             "to keep training them (without it they would go untrained)")
        return model
    want = _hint_inputs_wanted(config)
    for kind, had, wanted in (("local", has[0], want[0]), ("global", has[1], want[1])):
        if had and not wanted:
            raise UsageError(f"--hints {config.hints} contradicts the --init-from model's {kind} hint input "
                             f"(config.{'hint_inputs' if kind == 'local' else 'global_hints'}); use --hints both")
    if want == has:
        return model
    return ColorizationModel.from_plain(model, hint_inputs=want[0], global_hints=want[1])


def build_model(config):
    """A new model of `config.architecture` or the `init_from` one (either family) with this run's loss
    settings; for `init_from`, the architecture, width and norm (and for hypercolumns the colour space)
    are set to the model's, recorded as trained. `init_backbone` copies VGG-16 weights into a new
    hypercolumn trunk (`ConversionError`, one line, before any training)."""
    import torch
    from transformers import AutoModel

    from hf_colorize.models.colorization.configuration_colorization import ColorizationConfig
    from hf_colorize.models.colorization.configuration_hypercolumn import HypercolumnConfig
    from hf_colorize.models.colorization.modeling_colorization import ColorizationModel
    from hf_colorize.models.colorization.modeling_hypercolumn import HypercolumnColorizationModel
    from hf_colorize.training.palette import load_palette

    if config.init_from:
        try:
            model = AutoModel.from_pretrained(config.init_from)
        except Exception as err:  # noqa: BLE001 - transformers raises OSError/ValueError/KeyError variants
            raise ModelLoadError(f"cannot load model {shown(config.init_from)}: {one_line(err)}") from None
        if isinstance(model, HypercolumnColorizationModel):
            _check_init_from(config, model.config, "hypercolumn")
            model.config.sample_pixels = config.sample_pixels  # a training setting, not the architecture
            config.architecture, config.color_space = "hypercolumn", model.config.color_space
        elif isinstance(model, ColorizationModel):
            _check_init_from(config, model.config, "eccv16")
            model = _grow_for_hints(config, model)
            config.architecture = "eccv16"
            model.config.loss_type = config.loss
            model.config.focal_gamma = config.focal_gamma
            model.config.rebalance_lambda = config.rebalance_lambda
        else:
            raise ModelLoadError(f"cannot fine-tune {shown(config.init_from)}: not a colorization model "
                                 f"({type(model).__name__})")
        config.width, config.norm = model.config.width_multiplier, model.config.norm_type
        return model
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    try:
        if config.architecture == "hypercolumn":
            layers = {"hypercolumn_layers": list(config.hypercolumn_layers)} if config.hypercolumn_layers else {}
            model = HypercolumnColorizationModel(HypercolumnConfig(
                width_multiplier=config.width, norm_type=config.norm, color_space=config.color_space,
                lab_histogram=config.lab_histogram, hidden_size=config.hidden_size, fc_channels=config.fc_channels,
                sample_pixels=config.sample_pixels, **layers))
        else:
            bins = load_palette(config.bins).tolist() if config.bins else None
            local, global_ = _hint_inputs_wanted(config)
            model = ColorizationModel(ColorizationConfig(
                width_multiplier=config.width, norm_type=config.norm, ab_bins=bins, loss_type=config.loss,
                focal_gamma=config.focal_gamma, rebalance_lambda=config.rebalance_lambda, hint_inputs=local,
                global_hints=global_, hint_shortcut=local))
    except ValueError as err:
        raise TrainingError(f"cannot build the model: {one_line(err)}") from None
    if config.init_backbone:
        from hf_colorize.export.vgg16 import init_backbone

        init_backbone(model, config.init_backbone)
    return model


def param_groups(model, config) -> list:
    """Adam's parameter groups: the trunk at --lr and, when training hints, the hint layers at --lr x
    --hint-lr-scale (the scheduler scales both alike)."""
    from hf_colorize.models.colorization.modeling_colorization import HINT_MODULE_PREFIXES

    trunk, hint = [], []
    for name, param in model.named_parameters():
        (hint if config.hints and name.startswith(HINT_MODULE_PREFIXES) else trunk).append(param)
    groups = [{"params": trunk, "lr": config.lr}]
    if hint:
        groups.append({"params": hint, "lr": config.lr * config.hint_lr_scale})
    return groups


def hint_kwargs(config, model, labels, generator) -> dict:
    """The simulated hints of a batch (`training.hints.simulate_hints` on its ground-truth `labels`) as
    `forward` keyword arguments; {} when `config.hints` is off."""
    if not config.hints:
        return {}
    from hf_colorize.training.hints import simulate_hints

    return simulate_hints(labels, generator, model.ab_bins, kind=config.hints, neighbors=model.config.soft_encode_neighbors,
                          sigma=model.config.soft_encode_sigma)


def evaluate(model, config, accelerator, device):
    """Mean loss and mean ab error on the first `eval_images` held-out images (centre crops); with
    `config.hints`, also with simulated hints (`eval/*_hints`; fixed seeds: comparable across runs)."""
    import torch

    from hf_colorize.training.data import ColorizationStream, batches, lab_batch
    from hf_colorize.training.hints import step_generator

    source = config.eval_dataset or config.dataset
    stream = ColorizationStream(source, config.eval_split or config.split, config.image_column,
                                crop_size=config.crop_size, train=False)
    model.eval()
    sums, batches_seen, n = {}, 0, 0
    with torch.inference_mode():
        for i, batch in enumerate(batches(iter(stream), config.batch_size)):
            pixel_values, labels = lab_batch(batch["rgb"])
            pixel_values, labels = pixel_values.to(device), labels.to(device)
            runs = {"": {}}
            if config.hints:
                runs["_hints"] = hint_kwargs(config, model, labels, step_generator(0, i, purpose="eval"))
            for suffix, hints in runs.items():
                out = model(pixel_values=pixel_values, labels=labels, decode=True, **hints)
                ab_true = torch.nn.functional.adaptive_avg_pool2d(labels, out.ab.shape[-2:])
                for name, value in (("loss", out.loss.item()), ("ab_error", (out.ab - ab_true).pow(2).sum(1).sqrt().mean().item())):
                    sums[f"eval/{name}{suffix}"] = sums.get(f"eval/{name}{suffix}", 0.0) + value
            batches_seen += 1
            n += batch["rgb"].shape[0]
            if n >= config.eval_images:
                break
    model.train()
    if not batches_seen:
        return {}
    return {**{k: v / batches_seen for k, v in sums.items()}, "eval/images": n}


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------
def train(config=None, **overrides) -> str:
    """Train (or fine-tune, or resume) and export `output_dir/final`, a folder `from_pretrained` loads;
    with `push_to_hub`, publish it too. Returns the exported folder's path.

    config: a `TrainingConfig`, a dict, an argparse namespace, or None; `overrides` set single settings
    (`train(dataset="packed/", output_dir="runs/x")`). Every check that needs no data runs first
    (`check_config`). Raises `ColorizeError` subclasses with one line; complete checkpoints are kept."""
    config = TrainingConfig.from_args(config, **overrides)  # a copy: the caller's object is not changed
    check_config(config)

    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from hf_colorize.models.colorization.image_processing_colorization import ColorizationImageProcessor
    from hf_colorize.training.data import ColorizationStream, batches, lab_batch, worker_deaths_in_one_line
    from hf_colorize.training.hints import step_generator
    from hf_colorize.training.priors import estimate_prior, load_prior

    has_accelerator = torch.cuda.is_available() or torch.backends.mps.is_available() or (
        hasattr(torch, "xpu") and torch.xpu.is_available())
    accelerator = Accelerator(
        cpu=config.cpu or not has_accelerator,  # without it, torchrun on CPUs would not form a gloo process group
        mixed_precision=config.mixed_precision,
        log_with=None if config.report_to == "none" else config.report_to,
        project_dir=config.output_dir,
        step_scheduler_with_optimizer=False,  # our schedule counts optimizer steps, whatever the world size
    )
    set_seed(config.seed)
    try:
        os.makedirs(config.output_dir, exist_ok=True)
    except OSError as err:
        raise TrainingError(f"cannot create --output-dir {shown(config.output_dir)}: {err.strerror or one_line(err)}") from None
    if accelerator.is_main_process:  # what killed runs left half-written (never a live run's)
        sweep_temporaries(config.output_dir)
        sweep_temporaries(os.path.join(config.output_dir, "checkpoints"))
    accelerator.wait_for_everyone()
    device = accelerator.device

    # model, streamed data, prior -------------------------------------------------------------------
    model = build_model(config)
    stream = ColorizationStream(config.dataset, config.split, config.image_column, crop_size=config.crop_size,
                                seed=config.seed, rank=accelerator.process_index,
                                world_size=accelerator.num_processes, shuffle_buffer=config.shuffle_buffer,
                                num_workers=config.num_workers,
                                prefetch=-(-2 * config.batch_size * config.grad_accum // max(1, config.num_workers)))

    checkpoints = [] if config.no_resume else list_checkpoints(config.output_dir)
    resume_dir = config.resume_from or (checkpoints[-1] if checkpoints else None)
    if resume_dir is None and config.architecture == "eccv16" and config.loss == "rebalanced_ce":
        try:
            if config.prior:
                prior = load_prior(config.prior, model.ab_bins)
            else:  # every rank estimates from the same unshuffled head of the stream: identical priors
                head = ColorizationStream(config.dataset, config.split, config.image_column, crop_size=config.crop_size,
                                          train=False)
                prior = estimate_prior((b["rgb"] for b in batches(iter(head), 32)), model.ab_bins.cpu(),
                                       sigma=model.config.prior_sigma, max_images=config.prior_images, progress=False)
            model.set_bin_prior(prior)
        except (DataSourceError, ValueError) as err:
            raise TrainingError(f"bin prior: {one_line(err)}") from None

    model = model.to(memory_format=torch.channels_last)  # faster convolutions on CPU (oneDNN) and recent GPUs
    optimizer = torch.optim.Adam(param_groups(model, config), lr=config.lr, betas=tuple(config.betas),
                                 weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    step = 0
    if resume_dir:
        state_file = os.path.join(resume_dir, "trainer_state.json")
        if not os.path.isfile(state_file):
            raise TrainingError(f"{resume_dir}: not a complete checkpoint (no trainer_state.json)")
        try:
            accelerator.load_state(resume_dir)
            with open(state_file) as f:
                step = int(json.load(f)["step"])  # load_state() does not restore accelerate's counter; ours is here
        except Exception as err:  # noqa: BLE001 - corrupt/foreign checkpoint: say which, keep it for inspection
            raise TrainingError(f"{resume_dir}: cannot resume from this checkpoint ({one_line(err)}); "
                                "use --resume-from another checkpoint or --no-resume") from None
        rank_state = os.path.join(resume_dir, f"stream_state_{accelerator.process_index}.json")
        if os.path.isfile(rank_state):
            with open(rank_state) as f:
                stream.load_state_dict(json.load(f))
        accelerator.print(f"resumed from {resume_dir} at step {step}")

    if accelerator.is_main_process and config.report_to != "none":
        accelerator.init_trackers("hf-colorize", config={k: v for k, v in dataclasses.asdict(config).items()
                                                         if isinstance(v, (int, float, str, bool))})
    sample_log = open(f"{config.log_samples}.rank{accelerator.process_index}", "a") if config.log_samples else None

    # the loop ----------------------------------------------------------------------------------------
    unwrapped = accelerator.unwrap_model(model)
    model.train()
    data = batches(iter(stream), config.batch_size)
    show_bar = accelerator.is_main_process and (sys.stderr.isatty() if config.progress is None else config.progress)
    bar = tqdm(total=config.max_steps, initial=step, desc="train", disable=not show_bar)
    t0, seen, waited = time.time(), 0, 0.0
    try:
        with worker_deaths_in_one_line(config.num_workers > 0):  # a worker's death can surface mid-step
            while step < config.max_steps:
                loss_sum = 0.0
                for micro in range(config.grad_accum):
                    t_wait = time.perf_counter()
                    batch = next(data)  # DataSourceError (e.g. no usable images) propagates as it is
                    waited += time.perf_counter() - t_wait
                    if sample_log:
                        sample_log.write("\n".join(batch["keys"]) + "\n")
                    # colour conversion on the training device, for the whole batch (uint8 travels: 4x less than float)
                    pixel_values, labels = lab_batch(batch["rgb"].to(device, non_blocking=True))
                    pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
                    # hints seeded by (seed, step, rank, micro) alone: a resumed run draws the same ones
                    hints = hint_kwargs(config, unwrapped, labels,
                                        step_generator(config.seed, step, accelerator.process_index, micro))
                    sync = accelerator.no_sync(model) if micro < config.grad_accum - 1 else nullcontext()
                    with sync, accelerator.autocast():
                        loss = model(pixel_values=pixel_values, labels=labels, **hints).loss / config.grad_accum
                    accelerator.backward(loss)
                    loss_sum += loss.item()
                    seen += batch["rgb"].shape[0]
                if config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                bar.update(1)
                if step % config.log_every == 0 or step == config.max_steps:
                    elapsed = max(1e-9, time.time() - t0)
                    rate, wait_share = seen / elapsed, waited / elapsed
                    logs = {"train/loss": loss_sum, "train/lr": scheduler.get_last_lr()[0], "train/images_per_s": rate,
                            "train/data_wait_share": wait_share}
                    logs.update({f"data/{k}": v for k, v in stream.stats.as_dict().items()})
                    bar.set_postfix(loss=f"{loss_sum:.3f}", img_s=f"{rate:.1f}")
                    if not show_bar:  # logs and pipes get one line per logged step instead of a bar
                        accelerator.print(f"step {step}: loss={loss_sum:.4f} lr={logs['train/lr']:.3g} images/s={rate:.1f} "
                                          f"data_wait={wait_share:.1%}", flush=True)
                    accelerator.log(logs, step=step)
                if (config.eval_split or config.eval_dataset) and config.eval_every and step % config.eval_every == 0:
                    if accelerator.is_main_process:
                        metrics = evaluate(unwrapped, config, accelerator, device)
                        accelerator.log(metrics, step=step)
                        bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
                    accelerator.wait_for_everyone()
                if config.checkpoint_every and (step % config.checkpoint_every == 0 or step == config.max_steps):
                    save_checkpoint(accelerator, config.output_dir, step, stream.state_dict(), config.checkpoints_total_limit)
    finally:
        bar.close()
        if sample_log:
            sample_log.close()
    if config.log_samples:  # per-rank weight fingerprint: data-parallel ranks must end identical
        with torch.no_grad():
            fingerprint = {"step": step, "checksum": float(sum(p.double().sum() for p in unwrapped.parameters())),
                           "abs_sum": float(sum(p.double().abs().sum() for p in unwrapped.parameters()))}
        with open(f"{config.log_samples}.rank{accelerator.process_index}.json", "w") as f:
            json.dump(fingerprint, f)

    # export ------------------------------------------------------------------------------------------
    accelerator.wait_for_everyone()
    final_dir = os.path.join(config.output_dir, "final")
    if accelerator.is_main_process:
        try:
            with atomic_path(final_dir) as tmp:  # complete or absent: a killed run never looks finished
                unwrapped.config.image_size = config.export_size  # config and processor agree on the input size
                unwrapped.save_pretrained(tmp, safe_serialization=True)
                ColorizationImageProcessor(size=config.export_size).save_pretrained(tmp)
                with open(os.path.join(tmp, "training_args.json"), "w") as f:
                    json.dump(config.to_json_dict(), f, indent=2)
                if os.path.isdir(final_dir):  # a finished run trained further
                    _discard(final_dir)
        except OSError as err:
            raise TrainingError(f"cannot export {shown(final_dir)}: {err.strerror or one_line(err)}") from None
        accelerator.print(f"exported {final_dir}; stream: {stream.stats.as_dict()}")
        if config.push_to_hub:
            from hf_colorize.hub.push import push_to_hub

            try:
                push_to_hub(final_dir, config.hub_model_id, private=config.hub_private)
            except ColorizeError as err:
                raise TrainingError(f"training finished and {final_dir} is saved, but the push failed: "
                                    f"{one_line(err)}") from None
            accelerator.print(f"pushed {final_dir} to {config.hub_model_id}")
    accelerator.end_training()
    return final_dir
