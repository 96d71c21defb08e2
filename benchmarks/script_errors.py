"""How the experiment scripts end on a user's error: a `WorkbenchError` (a checkpoint that is not there, a
teacher that wrote no verified trace, a tracker whose package is missing) prints `error: <its one line>`
and exits with its status, as the `workbench` commands do, instead of a traceback."""
from __future__ import annotations

import sys
from typing import Callable

from llm_core.errors import WorkbenchError


def run_script(main: Callable[[], int | None]) -> None:
    """Run a script's `main` and exit with its return value (None = 0), or with a WorkbenchError's line."""
    try:
        code = main()
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    raise SystemExit(code or 0)
