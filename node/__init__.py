"""The per-node agent (trio): dials the control plane, runs kernels as containers, streams runs.

`serve(config)` is the whole agent; `shipyard node serve --config FILE` runs it.
"""

from node.agent import serve
from node.config import NodeConfig
from node.errors import NodeError

__all__ = ["NodeConfig", "NodeError", "serve"]
