"""Package a trained export as an embedded model (default `hf_colorize/default_model`; either family).

    python scripts/package_default_model.py runs/w375ft/final --size 144 --temperature 0.25
    python scripts/package_default_model.py runs/hc/hc-huechroma/final --out hf_colorize/hypercolumn_model

Writes config.json (with the given inference defaults: network input size and annealed-mean
temperature), preprocessor_config.json (same size), model.safetensors with the float parameters cast to
fp16 (half the size; buffers such as BatchNorm statistics, bins and prior stay exact), and the export's
training_args.json. No remote-code files: the installed package registers the classes. Evaluate the
result afterwards with `hf-colorize evaluate --model hf_colorize/default_model ... --json
hf_colorize/default_model/eval_results.json`.
"""

import argparse
import json
import os
import shutil
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # scripts/ -> the repository root
sys.path.insert(0, ROOT)
from transformers import AutoModel  # noqa: E402

from hf_colorize import ColorizationImageProcessor  # noqa: E402  (importing it registers both families)

OUT = os.path.join(ROOT, "hf_colorize", "default_model")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="a trained model folder (e.g. runs/NAME/final)")
    parser.add_argument("--size", type=int, default=None, help="network input size (default: the export's)")
    parser.add_argument("--temperature", type=float, default=None, help="annealed-mean T (default: the export's)")
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--data", default=None,
                        help="the training photos, their sources and terms, in a sentence (recorded as `data`)")
    args = parser.parse_args()

    model = AutoModel.from_pretrained(args.export, dtype=torch.float32)
    if args.size:
        model.config.image_size = args.size
    if args.temperature:
        model.config.decode_temperature = args.temperature
    tmp = args.out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    params = {name for name, _ in model.named_parameters()}
    # config.json keeps dtype float32 (the loaded model's): stored in fp16, loaded and run in float32
    model.save_pretrained(tmp, state_dict={k: (v.half() if k in params else v) for k, v in model.state_dict().items()})
    ColorizationImageProcessor(size=model.config.image_size).save_pretrained(tmp)
    with open(os.path.join(args.export, "training_args.json")) as f:
        stages = [json.load(f)]
    while True:  # the runs it started from, oldest first
        first = stages[0]
        if first.get("init_from_args"):  # a packaged model: its own stages are recorded inside it
            stages[:1] = [*first["init_from_args"],
                          {k: v for k, v in first.items() if k not in ("init_from_args", "description", "data")}]
        elif first.get("init_from") and os.path.exists(os.path.join(first["init_from"], "training_args.json")):
            with open(os.path.join(first["init_from"], "training_args.json")) as f:
                stages.insert(0, json.load(f))
        else:
            break
    record = dict(stages[-1], width=model.config.width_multiplier)  # older trainers recorded the unused --width
    if len(stages) > 1:  # flat keys stay the last stage's (the model card's recipe table reads them)
        record["init_from_args"] = stages[:-1]
        record["description"] = "Trained in stages: " + "; then ".join(
            f"{a['max_steps']} steps at lr {a['lr']} ({a['lr_schedule']}, {a['warmup_steps']} warm-up)" for a in stages
        ) + f". Inference defaults: network input {model.config.image_size} px, T = {model.config.decode_temperature}."
    if args.data:
        record["data"] = args.data
    with open(os.path.join(tmp, "training_args.json"), "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    for name in os.listdir(tmp):  # no remote code: the installed package registers the classes itself
        if name.endswith(".py"):
            os.remove(os.path.join(tmp, name))
    shutil.rmtree(args.out, ignore_errors=True)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: size {model.config.image_size}, T {model.config.decode_temperature}")


if __name__ == "__main__":
    main()
