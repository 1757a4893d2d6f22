"""Render docs/images/default_examples.jpg: gray input / colorized pairs of the Space's public-domain
skimage example photos, with the embedded default model. Run (with the package installed): python scripts/make_examples.py"""
import os

from PIL import Image
from transformers import pipeline

import hf_colorize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # scripts/ -> the repository root
HEIGHT = 260

colorize = pipeline("image-colorization", model=hf_colorize.DEFAULT_MODEL)
tiles = []
for name in ("astronaut", "coffee", "chelsea", "camera"):
    gray = Image.open(os.path.join(ROOT, "spaces_app", "examples", f"{name}.jpg")).convert("L")
    gray = gray.resize((round(gray.width * HEIGHT / gray.height), HEIGHT), Image.LANCZOS)
    tiles += [gray.convert("RGB"), colorize(gray)]
sheet = Image.new("RGB", (sum(t.width for t in tiles), HEIGHT), "white")
x = 0
for t in tiles:
    sheet.paste(t, (x, 0))
    x += t.width
sheet.save(os.path.join(ROOT, "docs", "images", "default_examples.jpg"), quality=88)
print(sheet.size)
