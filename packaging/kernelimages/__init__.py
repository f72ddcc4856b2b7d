"""Kernel image recipes and their builder (`shipyard image build`), without a registry.

The design keeps image recipes with the rest of the build inputs in `packaging/`. That folder is
not itself a Python package: `packaging` is the name of the PyPI library pip and setuptools
import, and a package of ours by that name would shadow it. So `packaging/` is a second source
root (pyproject.toml) and this package is imported as `kernelimages`, the name of what it holds.
It needs only the bottom package `hostlib`; nothing but the `shipyard` command and tests use it.
"""

from kernelimages._build import (
    FIXTURE_IMAGE,
    FIXTURE_LAB_IMAGE,
    LAB_IMAGE,
    PYTHON_IMAGE,
    RECIPES,
    ImageBuildError,
    build_image,
    image_exists,
)
from kernelimages._cli import build

__all__ = [
    "FIXTURE_IMAGE",
    "FIXTURE_LAB_IMAGE",
    "LAB_IMAGE",
    "PYTHON_IMAGE",
    "RECIPES",
    "ImageBuildError",
    "build",
    "build_image",
    "image_exists",
]
