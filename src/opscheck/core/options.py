"""argparse types made from plain validators, shared by pytest's options and the commands."""

import argparse
from collections.abc import Callable
from typing import Any


def option_type(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a function that raises ValueError with the reason (a usage error)."""

    def convert(text: str):
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None

    convert.__name__ = check.__name__
    return convert
