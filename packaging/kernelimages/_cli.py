"""`shipyard image build RECIPE`: any recipe, the base ones (kernelimages/_build.py) and their
lab variants (kernelimages/_lab.py)."""

from __future__ import annotations

import click

from kernelimages._build import RECIPES, ImageBuildError, build_image, image_exists
from kernelimages._lab import LAB_RECIPES, build_lab_image


@click.command("build")
@click.argument("recipe", metavar="RECIPE", type=click.Choice(sorted(RECIPES)))
@click.option("--tag", default=None, help="Image name to build (default: the recipe's own name).")
@click.option(
    "--if-missing", is_flag=True, help="Do nothing when the recipe's current image exists."
)
def build(recipe: str, tag: str | None, if_missing: bool) -> None:
    """Build a kernel image from RECIPE without a registry.

    python: shipyard/python:3.11 by debootstrap from a Debian mirror (SHIPYARD_DEBIAN_MIRROR).
    python-host: the test fixture shipyard-test/python:3.11 from this host's own packages.
    python-lab, python-host-lab: those two plus JupyterLab, ttyd and dropbear, started on
    demand (wheels from the package index, libraries from Debian; 2-5 minutes).
    """
    name = tag or RECIPES[recipe]
    try:
        if if_missing and image_exists(name, current=True, lab=recipe in LAB_RECIPES):
            click.echo(f"{name} already exists")
            return
        if recipe in LAB_RECIPES:
            build_lab_image(recipe, tag=tag, log=click.echo)
        else:
            build_image(recipe, tag=tag, log=click.echo)
    except ImageBuildError as exc:
        raise click.ClickException(str(exc)) from exc
