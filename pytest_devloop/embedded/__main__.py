"""`python -m pytest_devloop.embedded --dir DIR [--port N]`: the background cluster process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_devloop.embedded.cluster import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_devloop.embedded")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    return serve(args.dir, args.port)


if __name__ == "__main__":
    sys.exit(main())
