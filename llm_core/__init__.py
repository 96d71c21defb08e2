"""llm_core: the headless library behind LLM Workbench (no UI imports here)."""
from .errors import CheckpointError, ConfigError, DataError, GenerationError, WorkbenchError
from .model import GPT, GPTConfig, PRESETS
from .device import pick_device
from .tokenizer import Tokenizer, load_tokenizer
from .engine import Engine

__all__ = [
    "Engine",
    "Tokenizer",
    "load_tokenizer",
    "GPT",
    "GPTConfig",
    "PRESETS",
    "pick_device",
    "WorkbenchError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "GenerationError",
]
