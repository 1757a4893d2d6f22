"""hf-colorize: automatic colorization (Zhang et al., ECCV 2016) native to the Hugging Face ecosystem.

Importing the package registers the model with the Auto classes and the `image-colorization`
pipeline task, so no `trust_remote_code` is needed when it is installed.

Layout (the data flow): `models/` (one remote-code set per model family), `common` (loading, errors,
atomic writes, limits), `training/`, `evaluation/`, `video/`, `hub/`, `export/`, `cli/`.
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings

from transformers import AutoConfig, AutoImageProcessor, AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from hf_colorize.models.colorization.configuration_colorization import ColorizationConfig, eccv16_ab_bins
from hf_colorize.models.colorization.image_processing_colorization import (
    ColorizationImageProcessor,
    ColorizationInputError,
    ColorizeError,
)
from hf_colorize.models.colorization.configuration_hypercolumn import HypercolumnConfig
from hf_colorize.models.colorization.modeling_colorization import ColorizationModel, ColorizationOutput, decode_ab
from hf_colorize.models.colorization.modeling_hypercolumn import (
    HypercolumnColorizationModel,
    HypercolumnColorizationOutput,
)
from hf_colorize.models.colorization.pipeline_colorization import Colorizer, ImageColorizationPipeline

__version__ = "0.2.0"

TASK = "image-colorization"
#: The small trained checkpoint shipped inside the package (a folder `from_pretrained` accepts).
DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_model")
#: a small embedded hypercolumn model (Larsson et al., hue/chroma): the second family, offline
HYPERCOLUMN_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hypercolumn_model")

AutoConfig.register(ColorizationConfig.model_type, ColorizationConfig, exist_ok=True)
AutoModel.register(ColorizationConfig, ColorizationModel, exist_ok=True)
AutoImageProcessor.register(ColorizationConfig, slow_image_processor_class=ColorizationImageProcessor, exist_ok=True)
# save_pretrained then writes auto_map and copies the model files, for trust_remote_code users
ColorizationConfig.register_for_auto_class()
ColorizationModel.register_for_auto_class("AutoModel")
ColorizationImageProcessor.register_for_auto_class("AutoImageProcessor")
# the second family (Larsson et al.'s hypercolumns) shares the image processor and the pipeline
AutoConfig.register(HypercolumnConfig.model_type, HypercolumnConfig, exist_ok=True)
AutoModel.register(HypercolumnConfig, HypercolumnColorizationModel, exist_ok=True)
AutoImageProcessor.register(HypercolumnConfig, slow_image_processor_class=ColorizationImageProcessor, exist_ok=True)
HypercolumnConfig.register_for_auto_class()
HypercolumnColorizationModel.register_for_auto_class("AutoModel")
PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=ImageColorizationPipeline, pt_model=AutoModel, type="image")


def _register_int8() -> None:
    """precision="int8" runs through ONNX Runtime, which the remote-code files may not import: the package
    plugs it into the `Colorizer` here (onnxruntime itself is imported only when int8 is used)."""
    from hf_colorize.export import int8
    from hf_colorize.models.colorization import pipeline_colorization

    pipeline_colorization.LOGITS_BACKENDS.setdefault("int8", int8.BACKEND)


_register_int8()


# Module paths of version 0.1 (a flat package) -> where they live now. Kept importable for one release;
# see docs/layout.md.
MOVED_MODULES = {
    "configuration_colorization": "models.colorization.configuration_colorization",
    "modeling_colorization": "models.colorization.modeling_colorization",
    "image_processing_colorization": "models.colorization.image_processing_colorization",
    "pipeline_colorization": "models.colorization.pipeline_colorization",
    "data": "training.data", "priors": "training.priors", "palette": "training.palette", "train": "training.loop",
    "metrics": "evaluation.metrics", "evaluate": "evaluation.protocol",
    "video_io": "video.io", "temporal": "video.temporal", "histograms": "video.histograms",
    "video_clips": "video.clips", "video_eval": "video.metrics",
    "cards": "hub.cards", "convert_eccv16": "export.eccv16", "onnx_export": "export.onnx",
    "cli_colorize": "cli.colorize",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import hf_colorize.modeling_colorization` (an old path) gives the module at its new path."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package == __name__ and name in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = f"{__name__}.{MOVED_MODULES[spec.name.rpartition('.')[2]]}"
        warnings.warn(f"{spec.name} moved to {new}; the old path goes away in the next release",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module):
        pass  # already executed under its new name


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())

__all__ = [
    "ColorizationConfig",
    "ColorizationModel",
    "ColorizationOutput",
    "ColorizationImageProcessor",
    "ColorizationInputError",
    "ColorizeError",
    "Colorizer",
    "ImageColorizationPipeline",
    "HypercolumnConfig",
    "HypercolumnColorizationModel",
    "HypercolumnColorizationOutput",
    "DEFAULT_MODEL",
    "HYPERCOLUMN_MODEL",
    "TASK",
    "decode_ab",
    "eccv16_ab_bins",
]
