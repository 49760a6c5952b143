"""Typed errors of the assistant library: each message is one sentence that names the fix.

    AssistantError
     ├── ConfigError            a setting has a bad value
     ├── DocumentError          one file cannot be read (ingest warns and goes on)
     ├── IndexError_
     │    ├── IndexMissingError  no index built yet
     │    ├── IndexMismatchError the index was built with other settings
     │    ├── IndexBusyError     another ingest is writing the index (and this one would not wait)
     │    └── StoreUnavailableError the index's database cannot be reached
     ├── ModelNotInstalledError a model package is missing
     ├── QuestionError          an empty or unusable question
     └── QAFileError            a bad line in a QA (evaluation) file

The library raises and never prints or exits; the CLI maps AssistantError to one red line and exit 1,
the Streamlit page to st.error with the same sentence.
"""

from __future__ import annotations

from pathlib import Path


class AssistantError(Exception):
    """Base of every error the assistant raises on purpose."""


class ConfigError(AssistantError):
    """A setting has a value the assistant cannot use."""


class DocumentError(AssistantError):
    """One file cannot be turned into text; ingestion reports it and carries on."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")


class IndexError_(AssistantError):  # noqa: N801 - the builtin IndexError means something else
    """Something is wrong with the index folder."""


class IndexMissingError(IndexError_):
    """No index has been built in the index folder."""


class IndexMismatchError(IndexError_):
    """The index on disk was built with settings that differ from the current ones."""


class IndexBusyError(IndexError_):
    """Another ingest holds the index folder's writer lock."""


class StoreUnavailableError(IndexError_):
    """The database that holds the index (ASSISTANT_STORE=postgres) cannot be reached."""


class ModelNotInstalledError(AssistantError):
    """A model package that a setting names is not installed."""


class QuestionError(AssistantError):
    """The question cannot be answered as given (for example, it is empty)."""


class QAFileError(AssistantError):
    """A QA file for evaluation is malformed; the message names the line."""
