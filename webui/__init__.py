"""The web UI's files: Jinja templates and static assets (no Python logic).

The control plane serves them (controlplane/api/ui*.py). This package sits in the lowest
layer (.importlinter) so the control plane may import it for these paths; it imports nothing.
Third-party assets are vendored under static/vendor/, pinned, with their licences
(static/vendor/README.md): appliances are often air-gapped, so no CDN.
"""

from pathlib import Path

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")
