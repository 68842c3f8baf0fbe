"""Issue 18's measurement harness: `make bench` (python -m bench.run) measures each figure against a baseline
taken in the same run and writes bench/RESULTS.md. Nothing here is collected by pytest (testpaths = tests).

The harness reuses the project's own parts: the test doubles (tests/fakes.py, tests/conftest.py's World), the
local stack (submitter_local.stack), the CLI (`submitter`) and the function's real handler. tests/ is put on
sys.path here so those doubles import as the tests import them.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))
