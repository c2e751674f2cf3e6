"""Opening models: torch modules, TorchScript, safetensors + factory, ONNX, HTTP services.

The names are imported when first used (PEP 562), so that a command can start the sandbox's
zygote (:mod:`tafa.models.zygote`, which needs neither torch nor numpy) before it pays for
torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "Model": "base", "TorchModel": "base", "file_hash": "base", "module_hash": "base",
    "OnnxModel": "files", "ScriptModel": "files", "open_model": "open", "open_models": "open",
    "OpenOptions": "options", "SandboxLimits": "sandbox", "SandboxedModel": "sandbox",
    "Normalised": "adapt", "Reshaped": "adapt", "adapt_input": "adapt",
}

__all__ = ["Model", "Normalised", "OnnxModel", "OpenOptions", "Reshaped", "SandboxLimits", "SandboxedModel",
           "ScriptModel", "TorchModel", "adapt_input", "file_hash", "module_hash", "open_model", "open_models"]

if TYPE_CHECKING:
    from .adapt import Normalised, Reshaped, adapt_input
    from .base import Model, TorchModel, file_hash, module_hash
    from .files import OnnxModel, ScriptModel
    from .open import open_model, open_models
    from .options import OpenOptions
    from .sandbox import SandboxedModel, SandboxLimits


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tafa.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
