"""`hf-colorize train`: train or fine-tune a colorizer (`hf_colorize.training.loop.train`).

Every check that needs no data runs before training starts (exit code 2 for a bad setting, e.g.
`--push-to-hub` without a valid `--hub-model-id`, an `--output-dir` that is a file, a `--crop-size`
that is not a multiple of 8), so a long run never fails at its end for a reason known at its start.
"""

import argparse

from hf_colorize.cli import add_progress_argument, show_progress
from hf_colorize.cli.args import (network_size, non_negative_float, non_negative_int, positive_float, positive_int,
                                  unit_interval)


def require(*modules: str) -> None:
    """Raise `ImportError` naming the first missing module, so the dispatcher prints its one-line "missing
    dependency ... (pip install 'hf-colorize[EXTRA]')" instead of a traceback later in `run` (the modules
    are only looked up here, not imported: `--help` stays fast)."""
    import importlib.util

    for name in modules:
        if importlib.util.find_spec(name) is None:
            raise ImportError(f"No module named {name!r}", name=name)


def layer_list(text: str) -> tuple:
    """Comma-separated layer names (checked against the architecture's by `check_config`)."""
    layers = tuple(part.strip() for part in text.split(",") if part.strip())
    if not layers:
        raise argparse.ArgumentTypeError("needs at least one layer name")
    return layers


def add_arguments(parser) -> None:
    from hf_colorize.training.loop import (
        ARCHITECTURES,
        COLOR_SPACES,
        HINT_KINDS,
        LAB_HISTOGRAMS,
        LOSSES,
        LR_SCHEDULES,
        MIXED_PRECISIONS,
        NORMS,
        REPORTERS,
        TrainingConfig,
    )

    require("accelerate", "datasets")
    d = TrainingConfig()  # the defaults live in one place
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", required=True, help="image folder, parquet shards (folder or glob) or Hub dataset id")
    data.add_argument("--split", default=d.split)
    data.add_argument("--image-column", default=d.image_column)
    data.add_argument("--eval-dataset", default=None, help="held-out source (default: --dataset with --eval-split)")
    data.add_argument("--eval-split", default=None, help="held-out split, e.g. test (no periodic eval if neither is set)")
    data.add_argument("--eval-images", type=positive_int, default=d.eval_images, help="held-out images per evaluation")
    data.add_argument("--crop-size", type=network_size, default=d.crop_size, help="random-resized-crop side (multiple of 8)")
    data.add_argument("--shuffle-buffer", type=non_negative_int, default=d.shuffle_buffer,
                      help="records in the shuffle buffer (0 or 1: no shuffling)")
    data.add_argument("--num-workers", type=non_negative_int, default=d.num_workers,
                      help="DataLoader worker processes that decode and crop the images (0: in the training process); "
                           "the batches are the same for any number (default %(default)s)")
    model = parser.add_argument_group("model")
    model.add_argument("--architecture", default=d.architecture, choices=ARCHITECTURES,
                       help="eccv16 (Zhang et al., default) or hypercolumn (Larsson et al.)")
    model.add_argument("--init-from", default=None, help="fine-tune from this model (folder or Hub id)")
    model.add_argument("--width", type=positive_float, default=d.width,
                       help="width multiplier (1.0 = the paper's net: ECCV16 32.2M, VGG-16 hypercolumn 144M parameters)")
    model.add_argument("--norm", default=d.norm, choices=NORMS)
    model.add_argument("--bins", default=None, help="k-means palette from `hf-colorize fit-palette` (default: 313 ECCV16 bins)")
    model.add_argument("--loss", default=d.loss, choices=LOSSES)
    model.add_argument("--focal-gamma", type=non_negative_float, default=d.focal_gamma)
    model.add_argument("--prior", default=None, help="bin prior from `hf-colorize estimate-prior` (default: estimated from the stream)")
    model.add_argument("--prior-images", type=positive_int, default=d.prior_images,
                       help="images used to estimate the prior when --prior is not given")
    model.add_argument("--rebalance-lambda", type=unit_interval, default=d.rebalance_lambda)
    model.add_argument("--hints", nargs="?", const="both", default=None, choices=HINT_KINDS,
                       help="train with simulated user hints (SIGGRAPH 2017): local point hints and the global colour "
                            "distribution (default when given without a value), or only 'local' or 'global'; the model "
                            "gets those inputs (an --init-from model without them grows them, starting at zero)")
    model.add_argument("--hint-lr-scale", type=positive_float, default=d.hint_lr_scale,
                       help="learning rate of the hint layers = --lr times this (default %(default)s)")
    hyper = parser.add_argument_group("hypercolumn architecture (--architecture hypercolumn)")
    hyper.add_argument("--color-space", default=d.color_space, choices=COLOR_SPACES,
                       help="histograms of a and b (lab) or of hue and chroma (hue-chroma)")
    hyper.add_argument("--lab-histogram", default=d.lab_histogram, choices=LAB_HISTOGRAMS,
                       help="for lab: two marginals of 32 bins or one joint 16x16 histogram")
    hyper.add_argument("--hypercolumn-layers", type=layer_list, default=None, metavar="L1,L2,...",
                       help="VGG-16 layers in the hypercolumn (default: conv1_2,conv2_2,conv3_3,conv4_3,conv5_3,fc6,fc7)")
    hyper.add_argument("--hidden-size", type=positive_int, default=d.hidden_size, help="units of h_fc1")
    hyper.add_argument("--fc-channels", type=positive_int, default=d.fc_channels,
                       help="channels of fc6 and fc7 before --width (VGG-16: 4096)")
    hyper.add_argument("--sample-pixels", type=positive_int, default=d.sample_pixels,
                       help="pixels per image whose hypercolumn is trained each step (sparse training)")
    hyper.add_argument("--init-backbone", default=None, metavar="PATH",
                       help="torchvision VGG-16 weights (.safetensors or a weights-only torch file) for the trunk")
    optim = parser.add_argument_group("optimization")
    optim.add_argument("--max-steps", type=positive_int, default=d.max_steps)
    optim.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="per process")
    optim.add_argument("--grad-accum", type=positive_int, default=d.grad_accum)
    optim.add_argument("--lr", type=positive_float, default=d.lr)
    optim.add_argument("--min-lr-ratio", type=unit_interval, default=d.min_lr_ratio, help="final LR as a fraction of --lr")
    optim.add_argument("--lr-schedule", default=d.lr_schedule, choices=LR_SCHEDULES)
    optim.add_argument("--warmup-steps", type=non_negative_int, default=d.warmup_steps)
    optim.add_argument("--betas", type=unit_interval, nargs=2, default=d.betas, metavar=("B1", "B2"),
                       help="Adam betas, each in [0, 1) (the paper's: 0.9 0.99)")
    optim.add_argument("--weight-decay", type=non_negative_float, default=d.weight_decay, help="the paper's")
    optim.add_argument("--max-grad-norm", type=non_negative_float, default=d.max_grad_norm, help="0: no clipping")
    optim.add_argument("--mixed-precision", default=d.mixed_precision, choices=MIXED_PRECISIONS)
    optim.add_argument("--seed", type=non_negative_int, default=d.seed)
    optim.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    run_group = parser.add_argument_group("run")
    run_group.add_argument("-o", "--output-dir", required=True, help="checkpoints, logs and the exported model (final/)")
    run_group.add_argument("--checkpoint-every", type=non_negative_int, default=d.checkpoint_every, help="0: no checkpoints")
    run_group.add_argument("--checkpoints-total-limit", type=non_negative_int, default=d.checkpoints_total_limit,
                           help="newest checkpoints kept (0: all)")
    run_group.add_argument("--eval-every", type=non_negative_int, default=d.eval_every)
    run_group.add_argument("--log-every", type=positive_int, default=d.log_every)
    run_group.add_argument("--report-to", default=d.report_to, choices=REPORTERS)
    run_group.add_argument("--no-resume", action="store_true", help="start fresh even if the output dir has checkpoints")
    run_group.add_argument("--resume-from", default=None, help="a specific checkpoint folder (default: the latest)")
    run_group.add_argument("--export-size", type=network_size, default=d.export_size,
                           help="network input size of the exported model (config and image processor)")
    run_group.add_argument("--push-to-hub", action="store_true", help="publish final/ at the end (checked before training)")
    run_group.add_argument("--hub-model-id", "--repo-id", dest="hub_model_id", default=None, metavar="USER/NAME",
                           help="the Hub repository for --push-to-hub")
    run_group.add_argument("--hub-private", "--private", dest="hub_private", action="store_true",
                           help="create the Hub repository as private")
    run_group.add_argument("--log-samples", default=None, help=argparse.SUPPRESS)  # tests: sample keys per rank
    add_progress_argument(run_group)


def run(args) -> int:
    from hf_colorize.training.loop import TrainingConfig, check_config, train

    config = TrainingConfig.from_args(args, progress=show_progress(args))
    check_config(config)  # UsageError (exit 2) before any work
    train(config)
    return 0
