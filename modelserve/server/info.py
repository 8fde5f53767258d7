"""What the server says about itself, the same on every transport."""

from __future__ import annotations

SERVER_NAME = "modelserve"
# Open Inference Protocol extensions offered (the v2 server metadata "extensions" list)
EXTENSIONS = ["binary_tensor_data", "parameters", "model_repository", "streaming"]
CONTROL_DISABLED = (
    "the model control API (load/unload) is disabled on this server; "
    "start it with --control-api on (or MODELSERVE_CONTROL_API=on)"
)
