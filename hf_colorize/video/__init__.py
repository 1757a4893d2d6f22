"""Video: decoding and encoding (`io`), temporal smoothing (`temporal`, `histograms`), colorizing a film
(`colorize`), synthetic benchmark clips (`clips`) and flicker metrics (`metrics`)."""

from hf_colorize.video.colorize import VideoColorizer, colorize_video

__all__ = ["VideoColorizer", "colorize_video"]
