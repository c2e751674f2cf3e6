"""Opening models: torch modules, TorchScript, safetensors + factory, ONNX, HTTP services."""

from .base import Model, TorchModel, file_hash, module_hash

__all__ = ["Model", "TorchModel", "file_hash", "module_hash"]

from .files import OnnxModel, ScriptModel, open_model, open_models  # noqa: E402
from .options import OpenOptions  # noqa: E402
from .sandbox import SandboxedModel, SandboxLimits  # noqa: E402

__all__ += ["OnnxModel", "OpenOptions", "SandboxLimits", "SandboxedModel", "ScriptModel", "open_model", "open_models"]
