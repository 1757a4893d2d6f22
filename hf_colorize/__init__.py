"""hf-colorize: automatic colorization (Zhang et al., ECCV 2016) native to the Hugging Face ecosystem.

Importing the package registers the model with the Auto classes and the `image-colorization`
pipeline task, so no `trust_remote_code` is needed when it is installed.
"""

import os

from transformers import AutoConfig, AutoImageProcessor, AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_colorization import ColorizationConfig, eccv16_ab_bins
from .image_processing_colorization import ColorizationImageProcessor, ColorizationInputError
from .modeling_colorization import ColorizationModel, ColorizationOutput, decode_ab
from .pipeline_colorization import ImageColorizationPipeline

__version__ = "0.1.0"

TASK = "image-colorization"
#: The small trained checkpoint shipped inside the package (a folder `from_pretrained` accepts).
DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_model")

AutoConfig.register(ColorizationConfig.model_type, ColorizationConfig, exist_ok=True)
AutoModel.register(ColorizationConfig, ColorizationModel, exist_ok=True)
AutoImageProcessor.register(ColorizationConfig, slow_image_processor_class=ColorizationImageProcessor, exist_ok=True)
# save_pretrained then writes auto_map and copies the model files, for trust_remote_code users
ColorizationConfig.register_for_auto_class()
ColorizationModel.register_for_auto_class("AutoModel")
ColorizationImageProcessor.register_for_auto_class("AutoImageProcessor")
PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=ImageColorizationPipeline, pt_model=AutoModel, type="image")

__all__ = [
    "ColorizationConfig",
    "ColorizationModel",
    "ColorizationOutput",
    "ColorizationImageProcessor",
    "ColorizationInputError",
    "ImageColorizationPipeline",
    "DEFAULT_MODEL",
    "TASK",
    "decode_ab",
    "eccv16_ab_bins",
]
