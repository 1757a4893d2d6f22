"""Convert the original ECCV16 release weights (`colorization_release_v2*.pth` of the reference PyTorch
implementation, PyPI `rz-colorization`, `colorizers.eccv16`) into a `ColorizationModel` folder.

The release's `modelN` Sequentials map one to one onto `blocks[N-1].layers` (same layer indices);
`model8.6` (the 1x1 conv to 313 logits) becomes `classifier`; the bin centres are read from the final
1x1 conv `model_out.weight` `(2, Q, 1, 1)`, which holds them divided by `ab_norm` = 110.

The reference decodes with the plain softmax expectation: use `decode_mode="mean"` (equivalently
annealed mean with T = 1) to reproduce its output; the converted config keeps the paper's annealed mean
(T = 0.38) unless `--decode-mode` says otherwise.

    hf-colorize convert-eccv16 colorization_release_v2-9b330a0b.pth -o eccv16-hf
"""

import os
import re
import tempfile

from hf_colorize.common import ConversionError, atomic_path, one_line, shown

__all__ = ["ConversionError", "load_state_dict", "convert_eccv16_state_dict", "convert_eccv16_checkpoint",
           "check_output_dir"]

AB_NORM = 110.0  # the reference's BaseColor.ab_norm
_KEY = re.compile(r"^model([1-8])\.(\d+)\.(.+)$")


def load_state_dict(path):
    """Read a release checkpoint (`.pth` / `.pt` via `torch.load(weights_only=True)`, no pickled code
    runs; or `.safetensors`) into a flat `{name: tensor}` dict."""
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConversionError(f"{shown(path)}: " + ("not a file" if os.path.exists(path) else "no such file"))
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch/safetensors raise many types for corrupt or foreign files
        raise ConversionError(f"{shown(path)}: cannot read checkpoint ({one_line(err)})") from None
    # tolerate the common wrappers ({"state_dict": ...}, DataParallel's "module." prefix)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{shown(path)}: not a state dict of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def convert_eccv16_state_dict(state_dict, decode_mode=None, decode_temperature=None):
    """Release state dict (`model1.0.weight` ... `model8.6.weight`, `model_out.weight`) -> `ColorizationModel`
    (eval mode). Channels are read from the weights; bins = `model_out.weight[:, :, 0, 0].T * 110` `(Q, 2)`."""
    import torch

    from hf_colorize.models.colorization.configuration_colorization import ColorizationConfig
    from hf_colorize.models.colorization.modeling_colorization import ColorizationModel

    if "model_out.weight" not in state_dict:
        raise ConversionError("not an ECCV16 release checkpoint: no 'model_out.weight' (the bin centres)")
    out_w = state_dict["model_out.weight"]
    if out_w.dim() != 4 or out_w.shape[0] != 2 or out_w.shape[2:] != (1, 1):
        raise ConversionError(f"model_out.weight must have shape (2, Q, 1, 1), got {tuple(out_w.shape)}")
    # float64 then rounding to 1e-4 undoes the /110 float32 error (-90/110*110 = -89.99999...)
    bins = torch.round(out_w[:, :, 0, 0].double().T * AB_NORM * 1e4) / 1e4

    mapped, channels = {}, [None] * 8
    for key, value in state_dict.items():
        if key == "model_out.weight":
            continue
        m = _KEY.match(key)
        if m is None:
            raise ConversionError(f"unexpected key {key!r} in an ECCV16 release checkpoint")
        block, idx, rest = int(m.group(1)) - 1, int(m.group(2)), m.group(3)
        if block == 7 and idx == 6:
            mapped[f"classifier.{rest}"] = value
            continue
        mapped[f"blocks.{block}.layers.{idx}.{rest}"] = value
        if idx == 0 and rest == "weight":
            # Conv2d weight is (out, in, k, k); block 8 starts with a ConvTranspose2d: (in, out, k, k)
            channels[block] = int(value.shape[1] if block == 7 else value.shape[0])
    if None in channels:
        raise ConversionError(f"checkpoint lacks the first convolution of block(s) {[i + 1 for i, c in enumerate(channels) if c is None]}")
    if "classifier.weight" not in mapped or mapped["classifier.weight"].shape[0] != bins.shape[0]:
        raise ConversionError(f"model8.6 (the logits conv) must have {bins.shape[0]} outputs to match model_out.weight")

    kwargs = {}
    if decode_mode is not None:
        kwargs["decode_mode"] = decode_mode
    if decode_temperature is not None:
        kwargs["decode_temperature"] = decode_temperature
    has_bn = any(k.endswith("running_var") for k in mapped)
    config = ColorizationConfig(block_channels=channels, width_multiplier=1.0, norm_type="batch" if has_bn else "none",
                                ab_bins=bins.tolist(), **kwargs)
    model = ColorizationModel(config)
    mapped["ab_bins"] = torch.tensor(config.ab_bins, dtype=torch.float32)
    mapped["bin_prior"] = model.bin_prior.detach().clone()  # the release carries no prior: uniform
    ours = model.state_dict()
    for k, v in mapped.items():
        if k not in ours:
            raise ConversionError(f"checkpoint tensor {k!r} has no place in the ECCV16 architecture")
        if tuple(ours[k].shape) != tuple(v.shape):
            raise ConversionError(f"shape mismatch for {k}: checkpoint {tuple(v.shape)} vs model {tuple(ours[k].shape)}")
    # older releases omit BatchNorm's num_batches_tracked; nothing else may be missing
    missing = [k for k in ours if k not in mapped and not k.endswith("num_batches_tracked")]
    if missing:
        raise ConversionError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[0]!r}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in mapped.items()}, strict=False)
    return model.eval()


def check_output_dir(out_dir, overwrite: bool = False) -> str:
    """`ConversionError` unless `out_dir` is new, an empty folder, or (with `overwrite`) a folder."""
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConversionError(f"{shown(out_dir)}: exists and is a file, not a folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise ConversionError(f"{shown(out_dir)}: folder is not empty (pass --overwrite to replace its model files)")
    return out_dir


def _save(model, folder) -> None:
    from hf_colorize.models.colorization.image_processing_colorization import ColorizationImageProcessor

    model.save_pretrained(folder)
    ColorizationImageProcessor(size=256).save_pretrained(folder)


def convert_eccv16_checkpoint(path, out_dir, decode_mode=None, decode_temperature=None, overwrite=False):
    """Convert a release checkpoint file into a folder `from_pretrained` accepts (weights as safetensors,
    config, image processor at size 256). A new or empty `out_dir` appears complete or not at all
    (`common.atomic_path`); with `overwrite`, the model files of a non-empty folder are replaced one by
    one, config.json last, so an interrupted conversion never looks like a complete model. Returns the
    model. Raises `ConversionError` (one line)."""
    out_dir = check_output_dir(out_dir, overwrite)
    model = convert_eccv16_state_dict(load_state_dict(path), decode_mode, decode_temperature)
    parent = os.path.dirname(os.path.abspath(out_dir))
    try:
        os.makedirs(parent, exist_ok=True)
        if os.path.isdir(out_dir) and os.listdir(out_dir):
            # atomic_path replaces a whole folder, and the user's other files in it must stay: write the
            # model beside it, then rename each file into place (atomic per file), config.json last
            with tempfile.TemporaryDirectory(prefix=".convert-", dir=parent) as staging:
                _save(model, staging)
                for name in sorted(os.listdir(staging), key=lambda n: n == "config.json"):
                    os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
        else:
            with atomic_path(out_dir) as tmp:
                _save(model, tmp)
    except OSError as err:
        raise ConversionError(f"cannot write {shown(out_dir)}: {err.strerror or one_line(err)}") from None
    return model
