"""The commands of a batch run: the client's, or the kernel image's defaults from its labels.

Backend.AI's kernels decide what a batch run does when the client leaves a step to them (sends
"*", "" or null): its Python kernel runs `python main.py` when there is a main.py. Here that
knowledge is the image's own metadata, so any image can carry it:

    ai.shipyard.batch.<step>      the default command of a step (clean, build or exec)
    ai.shipyard.batch.<step>.if   a path, relative to the work directory, that must exist for the
                                  default to apply

A clean or build default whose path is missing is skipped. A run never "succeeds" without
running something: with no exec command, and no image default that applies, the exec step
prints why on stderr and exits with 127 (command not found), as Backend.AI's kernels do.
"""

from __future__ import annotations

import shlex

STEPS = ("clean", "build", "exec")
LABEL_PREFIX = "ai.shipyard.batch."
NOTHING_TO_RUN = 127


def commands(
    given: dict[str, str | None], labels: dict[str, str], image: str
) -> dict[str, str | None]:
    """The three step commands to run: `given`'s, each missing one from the image's labels."""
    result: dict[str, str | None] = {}
    for step in STEPS:
        command = given.get(step)
        if command is None:
            command = _default(step, labels, image)
        result[step] = command
    return result


def _default(step: str, labels: dict[str, str], image: str) -> str | None:
    command = labels.get(LABEL_PREFIX + step, "").strip()
    required = labels.get(f"{LABEL_PREFIX}{step}.if", "").strip()
    if step != "exec":
        if not command:
            return None
        return command if not required else f"if [ -e {shlex.quote(required)} ]; then {command}; fi"
    if not command:
        return _fail(
            f"nothing to run: no exec command was given and the image {image} has none by"
            " default (give one, e.g. --exec 'python main.py')"
        )
    if not required:
        return command
    missing = _fail(
        f"nothing to run: no exec command was given and there is no {required} (the image"
        f" {image} runs `{command}` when there is)"
    )
    return f"if [ -e {shlex.quote(required)} ]; then {command}; else {missing}; fi"


def _fail(message: str) -> str:
    return f"echo {shlex.quote('shipyard: ' + message)} >&2; exit {NOTHING_TO_RUN}"
