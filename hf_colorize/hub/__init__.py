"""The Hub: generated model cards (`cards`) and publishing a model folder (`push`)."""

from hf_colorize.hub.push import HubPushError, build_upload_folder, push_to_hub

__all__ = ["HubPushError", "build_upload_folder", "push_to_hub"]
