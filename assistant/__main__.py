"""`python -m assistant` is `nhs-assistant`."""

from assistant.cli import run

run()
