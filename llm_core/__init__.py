"""llm_core: the headless library behind LLM Workbench (no UI imports here)."""
from .errors import CheckpointError, ConfigError, DataError, GenerationError, WorkbenchError
from .model import GPT, GPTConfig, PRESETS
from .device import pick_device
from .host_memory import reuse_freed_memory
from . import cpu_kernels
from .adapters import add_adapters, load_peft_adapters, merge_adapters, save_peft_adapters
from .moe import MoEFeedForward
from .tokenizer import Tokenizer, load_tokenizer
from .data import InstructionDataset, PreferenceDataset, TextDataset
from .engine import ChatOptions, Conversation, Engine, SamplingParams
from .training import TrainConfig, Trainer, load_checkpoint, lr_at
from .dpo import dpo_loss

__all__ = [
    "dpo_loss",
    "TrainConfig",
    "Trainer",
    "load_checkpoint",
    "lr_at",
    "add_adapters",
    "merge_adapters",
    "save_peft_adapters",
    "load_peft_adapters",
    "MoEFeedForward",
    "TextDataset",
    "InstructionDataset",
    "PreferenceDataset",
    "Engine",
    "SamplingParams",
    "Conversation",
    "ChatOptions",
    "Tokenizer",
    "load_tokenizer",
    "GPT",
    "GPTConfig",
    "PRESETS",
    "pick_device",
    "reuse_freed_memory",
    "cpu_kernels",
    "WorkbenchError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "GenerationError",
]
