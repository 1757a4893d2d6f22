"""Model cards: `huggingface_hub.ModelCard` from the template in `model_cards/`, the model folder's
config and weights, its training arguments and an evaluation JSON from `hf-colorize evaluate`."""

import json
import os
import sys
from typing import Optional

from hf_colorize.common import HubError, one_line, shown
from hf_colorize.evaluation.protocol import LABELS, PREDICTORS

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # hf_colorize/
TEMPLATE_DIRS = (
    os.path.join(os.path.dirname(_PACKAGE_DIR), "model_cards"),  # source checkout (and editable installs)
    os.path.join(_PACKAGE_DIR, "model_cards"),  # if packaged inside hf_colorize
    os.path.join(sys.prefix, "share", "hf-colorize", "model_cards"),  # non-editable install (pyproject data-files)
)
TEMPLATE_NAME = "colorization.md"

# (key in the evaluation JSON, model-index metric name); the model's row becomes the card's eval results
CARD_METRICS = (
    ("auc_raw", "AuC (raw, ab thresholds 0-150)"),
    ("auc_rebalanced", "AuC (class-rebalanced)"),
    ("psnr", "PSNR (dB, 8-bit RGB)"),
    ("colorfulness_ratio", "Colourfulness ratio (prediction / ground truth)"),
    ("hue_accuracy", "Balanced hue accuracy"),
)
TASK_TYPE = "image-to-image"  # the Hub's closest pipeline tag; "image-colorization" goes in the tags
TAGS = ["image-colorization", "colorization", "hf-colorize", "computer-vision", "custom_code"]

IMAGENET_TERMS = (
    "ImageNet images may be used for non-commercial research and educational purposes only (the ImageNet "
    "terms of access), so these weights are released for **non-commercial research use only**."
)
DEFAULT_MODEL_DATA = (
    "The default model of hf-colorize was trained on the colour photos among 1,000 ImageNet (ILSVRC) sample "
    "photos (one per class; the grayscale ones are skipped), with some held out for evaluation. "
)
# training_args.json keys shown in the recipe table, in this order
RECIPE_KEYS = (
    "architecture", "color_space", "lab_histogram", "hidden_size", "fc_channels", "sample_pixels", "dataset", "split",
    "max_steps", "batch_size", "grad_accum", "lr", "lr_schedule", "warmup_steps", "min_lr_ratio",
    "betas", "weight_decay", "max_grad_norm", "crop_size", "loss", "focal_gamma", "rebalance_lambda", "prior_images",
    "width", "norm", "bins", "mixed_precision", "seed", "init_from", "hints", "hint_lr_scale",
)


CardError = HubError  # the name of version 0.1: a card that cannot be built is a failure to publish


def template_path() -> str:
    for folder in TEMPLATE_DIRS:
        path = os.path.join(folder, TEMPLATE_NAME)
        if os.path.isfile(path):
            return path
    raise HubError(f"model card template {TEMPLATE_NAME} not found in {' or '.join(TEMPLATE_DIRS)}")


def public_name(source) -> str:
    """A dataset/model reference fit for a public card: Hub ids as they are, local paths as their folder name."""
    source = os.fspath(source)
    if os.path.isabs(source) or source.startswith(".") or os.path.exists(source):
        return os.path.basename(os.path.normpath(source)) or source
    return source


def load_training_args(model_dir) -> Optional[dict]:
    """The trainer's `training_args.json` in `model_dir`, or None."""
    path = os.path.join(model_dir, "training_args.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:  # ValueError: bad JSON or bad UTF-8
        raise HubError(f"{shown(path)}: cannot read training arguments: {one_line(err)}") from None


def weights_summary(model_dir) -> dict:
    """File name, dtype and parameter count (buffers excluded) of the safetensors weights in `model_dir`."""
    from safetensors import safe_open

    files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    if not files:
        raise HubError(f"{shown(model_dir)}: no .safetensors weights")
    buffers = ("running_mean", "running_var", "num_batches_tracked", "ab_bins", "bin_prior")
    count, dtypes = 0, set()
    for name in files:
        with safe_open(os.path.join(model_dir, name), framework="pt") as f:
            for key in f.keys():
                if key.endswith(buffers):
                    continue
                sl = f.get_slice(key)
                n = 1
                for d in sl.get_shape():
                    n *= d
                count += n
                dtypes.add(sl.get_dtype())
    return {"file": files[0] if len(files) == 1 else f"{len(files)} shards", "dtype": "/".join(sorted(dtypes)), "parameters": count}


def eval_results(evaluation: dict, dataset_type: Optional[str] = None, dataset_name: Optional[str] = None) -> list:
    """`EvalResult`s (model-index) of the model's row of an evaluation JSON."""
    from huggingface_hub import EvalResult

    dataset = public_name(evaluation.get("dataset") or "images")
    row = evaluation["results"]["model"]
    out = []
    for key, name in CARD_METRICS:
        value = row.get(key)
        if value is None or value != value:  # missing or NaN
            continue
        out.append(EvalResult(
            task_type=TASK_TYPE, task_name="Image colorization",
            dataset_type=dataset_type or dataset, dataset_name=dataset_name or dataset,
            dataset_split=evaluation.get("split") or None,
            metric_type=key, metric_name=name, metric_value=float(value),
        ))
    return out


def eval_table(evaluation: dict) -> str:
    """Markdown table: the model and the two baselines."""
    lines = ["| | AuC raw | AuC rebalanced | PSNR (dB) | colourfulness ratio | hue accuracy |", "|---|---|---|---|---|---|"]
    for name in PREDICTORS:
        r = evaluation["results"][name]
        label = "**this model**" if name == "model" else LABELS[name]
        lines.append(f"| {label} | {r['auc_raw']:.3f} | {r['auc_rebalanced']:.3f} | {r['psnr']:.2f} | "
                     f"{r['colorfulness_ratio']:.2f} | {r['hue_accuracy']:.3f} |")
    return "\n".join(lines)


def _is_imagenet(*names) -> bool:
    return any("imagenet" in str(n).lower() for n in names if n)


def _recipe(training: Optional[dict]) -> str:
    if not training:
        return "Training hyperparameters were not recorded with this checkpoint."
    rows = []
    from hf_colorize.training.loop import ECCV16_ONLY, HYPERCOLUMN_ONLY

    other = ECCV16_ONLY if training.get("architecture") == "hypercolumn" else HYPERCOLUMN_ONLY  # not this run's
    for key in RECIPE_KEYS:
        if training.get(key) in (None, "", False) or key in other:
            continue
        if key == "hint_lr_scale" and not training.get("hints"):  # recorded by every run, used only with hints
            continue
        value = training[key]
        if key in ("dataset", "init_from", "bins"):
            value = public_name(value)
        rows.append(f"| {key} | `{json.dumps(value) if isinstance(value, (list, tuple)) else value}` |")
    loss = ("the KL loss of per-pixel colour histograms, trained sparsely at sampled pixels"
            if training.get("architecture") == "hypercolumn" else
            "soft-encoded class-rebalanced cross-entropy over the ab bins")
    text = (f"Trained with `hf-colorize train` (Accelerate; Adam, {loss}, random resized crops and flips, "
            "grayscale and undecodable photos skipped):\n\n"
            "| setting | value |\n|---|---|\n" + "\n".join(rows))
    if training.get("description"):
        text = training["description"].strip() + "\n\n" + text
    return text


def family_text(config) -> dict:
    """The card's description of the network, per model family: `system` (the paper and method),
    `architecture`, `output` and `code_files` (the remote-code files to review)."""
    if config.model_type == "hypercolumn-colorization":
        heads = " and ".join(f"{name} ({bins} bins)" for name, bins in config.head_sizes.items())
        fading = (f"; chroma faded by min(|z| / {config.fading_eta}, 1) where the hue is uncertain"
                  if config.color_space == "hue-chroma" and config.chromatic_fading else "")
        return {
            "system": ("the hypercolumn colorizer of Larsson, Maire & Shakhnarovich, *Learning Representations for "
                       "Automatic Colorization* (ECCV 2016) — a VGG-16 trunk whose activations at several depths are "
                       "upsampled to each pixel (a hypercolumn) and mapped to per-pixel colour histograms "
                       f"({config.color_space}), trained sparsely on {config.sample_pixels} pixels per image with a "
                       f"KL loss and decoded by {config.decode_mode.replace('_', ' ')}"),
            "architecture": (f"VGG-16 trunk (width multiplier {config.width_multiplier}), hypercolumn of "
                             f"{', '.join(config.hypercolumn_layers)}, h_fc1 of {config.hidden_size} units"),
            "output": (f"per-pixel histograms of {heads} at 1/{config.output_stride} resolution, decoded by "
                       f"{config.decode_mode.replace('_', ' ')}{fading}"),
            "code_files": "six `configuration_*`, `modeling_*`, `image_processing_*` and `pipeline_*` files",
        }
    return {
        "system": (f"the network of Zhang, Isola & Efros, *Colorful Image Colorization* (ECCV 2016) — a CNN that "
                   f"classifies each pixel's colour into {config.num_bins} quantized ab bins of CIE Lab at 1/4 "
                   "resolution, trained with a class-rebalanced soft-encoded cross-entropy and decoded with the "
                   f"annealed mean (T = {config.decode_temperature})"),
        "architecture": (f"ECCV16 colorization CNN, 8 conv blocks (dilated blocks 5-6), width multiplier "
                         f"{config.width_multiplier}"),
        "output": (f"distribution over {config.num_bins} ab bins at 1/4 resolution, decoded by "
                   f"{config.decode_mode.replace('_', ' ')} (T = {config.decode_temperature})"),
        "code_files": "four `*_colorization.py` files",
    }


def build_model_card(
    model_dir,
    repo_id: Optional[str] = None,
    evaluation: Optional[dict] = None,
    training: Optional[dict] = None,
    examples=(),
    license: Optional[str] = None,
    eval_plot: Optional[str] = None,
    is_default_model: Optional[bool] = None,
):
    """A `huggingface_hub.ModelCard` for the model in `model_dir`.

    evaluation: the dict written by `hf-colorize evaluate --json` (its model row becomes `model-index`).
    training: the trainer's arguments (default: `model_dir/training_args.json`); an optional
    "description" key adds free text. examples: `[{"name", "input", "output"}]` paths inside the repo.
    license: a Hub license id; by default "other" (non-commercial research) when the training data is
    ImageNet, else "apache-2.0" (the code's license; the card tells users the data's terms apply).
    """
    from huggingface_hub import ModelCard, ModelCardData

    from transformers import AutoConfig

    import hf_colorize

    model_dir = os.fspath(model_dir)
    try:
        config = AutoConfig.from_pretrained(model_dir)  # either family (the package registers both)
    except (OSError, ValueError, KeyError) as err:
        raise HubError(f"{shown(model_dir)}: cannot read the model config: {one_line(err)}") from None
    training = training if training is not None else load_training_args(model_dir)
    if is_default_model is None:
        is_default_model = os.path.realpath(model_dir) == os.path.realpath(hf_colorize.DEFAULT_MODEL)
    train_source = (training or {}).get("dataset")
    recorded = (training or {}).get("data")  # a packaged model's own sentence on its photos and their terms
    # the default is trained on ImageNet samples
    imagenet = is_default_model or _is_imagenet(train_source) or _is_imagenet(recorded)
    weights = weights_summary(model_dir)

    data_text = recorded + " " if recorded else (DEFAULT_MODEL_DATA if is_default_model else "")
    if train_source:
        data_text += f"Training source: `{public_name(train_source)}` (split `{training.get('split', 'train')}`). "
    elif not is_default_model:
        data_text += "The training data of this checkpoint was not recorded. "
    if imagenet:
        data_text += IMAGENET_TERMS
    else:
        data_text += "The weights are subject to the terms of the data they were trained on."

    if license is None:
        license = "other" if imagenet else "apache-2.0"
    license_kwargs = {"license_name": "imagenet-noncommercial-research"} if license == "other" and imagenet else {}
    license_text = (IMAGENET_TERMS + " The hf-colorize code in this repository (the `*_colorization.py` files) is Apache-2.0."
                    if imagenet else f"`{license}`. The weights are subject to the terms of their training data.")

    repo = repo_id or "path/to/this/model"
    title = repo_id.split("/")[-1] if repo_id else "hf-colorize colorization model"
    model_name = title
    ev = dict(eval_description="", eval_table="", eval_command="")
    results = []
    if evaluation:
        results = eval_results(evaluation)
        skipped = evaluation.get("skipped", {})
        proto = evaluation.get("protocol", {})
        dataset = public_name(evaluation.get("dataset") or "images")
        split = evaluation.get("split")
        ev["eval_description"] = (
            f"Measured by `hf-colorize evaluate` on {evaluation['num_images']} held-out colour photos of `{dataset}`"
            + (f" (split `{split}`)" if split else "")
            + f", {proto.get('size', '?')}x{proto.get('size', '?')} centre crops"
            + (f" (network input {proto['network_size']}x{proto['network_size']})"
               if proto.get("network_size") not in (None, proto.get("size")) else "")
            + f", decoding {proto.get('decode_mode', '?')}"
            f" T = {proto.get('temperature', '?')}; {skipped.get('grayscale', 0)} grayscale photos skipped."
        )
        ev["eval_table"] = eval_table(evaluation)
        ev["eval_command"] = (f"hf-colorize evaluate --model {repo} --dataset {dataset}" + (f" --split {split}" if split else "")
                              + (f" --size {proto['size']}" if proto.get("size") else "") + " --json eval_results.json")

    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=TASK_TYPE,
        tags=list(TAGS),
        license=license,
        datasets=[public_name(train_source)] if train_source and not os.path.exists(os.fspath(train_source)) else (
            ["imagenet-1k"] if imagenet else None),
        model_name=model_name,
        eval_results=results or None,
        **license_kwargs,
    )
    return ModelCard.from_template(
        card_data,
        template_path=template_path(),
        title=title,
        repo_id=repo,
        **family_text(config),
        temperature=config.decode_temperature,
        decode_mode=config.decode_mode,
        norm_type=config.norm_type,
        image_size=_processor_size(model_dir, config),
        num_parameters=f"{weights['parameters'] / 1e6:.2f} M",
        weights_file=weights["file"],
        weights_dtype=weights["dtype"],
        examples=list(examples),
        training_data=data_text.strip(),
        training_recipe=_recipe(training),
        eval_plot=eval_plot,
        extra_limitations=("- This is a small model (4.6M parameters) trained for about an hour on a 2-core CPU; larger "
                           "models trained longer on more photos colour more reliably." if is_default_model else ""),
        license_text=license_text,
        **ev,
    )


def _processor_size(model_dir, config) -> int:
    path = os.path.join(model_dir, "preprocessor_config.json")
    try:
        with open(path, encoding="utf-8") as f:
            return int(json.load(f).get("size", config.image_size))
    except (OSError, ValueError):
        return int(config.image_size)
