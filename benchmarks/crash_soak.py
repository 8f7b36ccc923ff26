"""200 SIGKILLs of a replaying live process, then the crash-safety checks (see tests/live/crashcheck.py).

Run from the repository root: ``python benchmarks/crash_soak.py --kills 200``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.live.crashcheck import main

if __name__ == "__main__":
    main()
