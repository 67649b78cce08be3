"""NanoQA: fine-tune the local SLM for short-answer QA (focal loss on answer tokens, distillation, LoRA).

``slm-router train`` or :func:`train` with a :class:`TrainConfig`; see ``docs/nanoqa.md``. torch and peft are
imported when training starts, not on import.
"""

from langchain_slm_router.training.data import QAExample, build_examples, check_disjoint
from langchain_slm_router.training.trainer import TrainConfig, TrainResult, train

__all__ = ["QAExample", "TrainConfig", "TrainResult", "build_examples", "check_disjoint", "train"]
