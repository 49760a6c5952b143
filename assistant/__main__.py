"""`python -m assistant` is `nhs-assistant`."""

import sys

from assistant.cli import main

sys.exit(main())
