"""JSON from outside (a target's answer, a command's output, a kept report): one parse.

json.loads raises RecursionError, not ValueError, on a document nested past Python's
recursion limit (100,000 `[`): every caller that reads "not JSON" from ValueError would show
a traceback instead. Here such a document is a ValueError like any other that is not JSON.
"""

import json
from typing import Any


def loads(text: str | bytes) -> Any:
    """json.loads; a document nested too deep raises ValueError, as any malformed one does."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested past Python's recursion limit") from None
