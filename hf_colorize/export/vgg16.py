"""Initialise a hypercolumn model's trunk from torchvision's VGG-16 weights (`train --init-backbone PATH`).

Larsson et al. start from ImageNet-trained VGG-16. torchvision's `vgg16().state_dict()` names the 13
convolutions `features.{0,2,5,...,28}` and the fully connected layers `classifier.{0,3,6}`; fc6
(`classifier.0`, 4096 x 25088 on the 7x7x512 pool5) becomes a 7x7 convolution and fc7 a 1x1 one, and
the first convolution is summed over its RGB inputs, as the paper does for the one gray channel (a gray
image replicated to RGB gives the same response). The file is read as safetensors or a weights-only
torch file: a pickle that needs code to load is refused.
"""

import os

from hf_colorize.common import ConversionError, shown
from hf_colorize.export.eccv16 import load_state_dict

__all__ = ["TORCHVISION_NAMES", "convert_vgg16_state_dict", "init_backbone"]

#: torchvision `vgg16` key prefix -> our module name
TORCHVISION_NAMES = dict(zip(
    [f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)] + ["classifier.0", "classifier.3"],
    ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2", "conv4_3",
     "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7"],
))


def convert_vgg16_state_dict(state) -> dict:
    """torchvision VGG-16 tensors -> `{our module name: {"weight", "bias"}}` with fc6/fc7 as convolutions
    and conv1_1 summed over RGB. Raises `ConversionError` naming a missing or wrong-shaped tensor."""
    out = {}
    for prefix, name in TORCHVISION_NAMES.items():
        weight, bias = state.get(f"{prefix}.weight"), state.get(f"{prefix}.bias")
        if weight is None or bias is None:
            continue  # checked against the model in init_backbone (a trunk may stop early)
        if name == "conv1_1":
            if weight.dim() != 4 or weight.shape[1] != 3:
                raise ConversionError(f"{prefix}.weight has shape {tuple(weight.shape)}, expected (64, 3, 3, 3) (RGB input)")
            weight = weight.sum(dim=1, keepdim=True)
        elif name == "fc6":
            if weight.dim() != 2 or weight.shape[1] % 49:
                raise ConversionError(f"{prefix}.weight has shape {tuple(weight.shape)}, expected (4096, 512*7*7)")
            weight = weight.reshape(weight.shape[0], weight.shape[1] // 49, 7, 7)
        elif name == "fc7":
            if weight.dim() != 2:
                raise ConversionError(f"{prefix}.weight has shape {tuple(weight.shape)}, expected (4096, 4096)")
            weight = weight[:, :, None, None]
        out[name] = {"weight": weight, "bias": bias}
    return out


def init_backbone(model, path) -> int:
    """Copy VGG-16 weights from `path` into `model`'s trunk (every conv and fc layer it has); returns the
    number of layers copied. Nothing is changed unless every layer fits."""
    import torch

    path = os.fspath(path)
    state = load_state_dict(path)  # ConversionError: missing file, pickle with code, not tensors
    converted = convert_vgg16_state_dict(state)
    targets = dict(model.convs.items())
    targets.update({name: layer for name, layer in (("fc6", model.fc6), ("fc7", model.fc7)) if layer is not None})
    plan = []
    for name, layer in targets.items():
        if name not in converted:
            prefix = next(p for p, n in TORCHVISION_NAMES.items() if n == name)
            raise ConversionError(f"{shown(path)}: no {prefix}.weight/.bias (not a torchvision VGG-16 state dict?)")
        weight, bias = converted[name]["weight"], converted[name]["bias"]
        if weight.shape != layer.weight.shape or bias.shape != layer.bias.shape:
            raise ConversionError(
                f"{shown(path)}: {name} has shape {tuple(weight.shape)} but the model's is {tuple(layer.weight.shape)} "
                "(VGG-16 weights need width_multiplier 1.0 and fc6_kernel_size 7)")
        plan.append((layer, weight, bias))
    with torch.no_grad():
        for layer, weight, bias in plan:
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
    return len(plan)
