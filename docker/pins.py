"""The image's pins, from one source: requirements.txt, with docker/requirements-gpu.txt's
overrides (torch's CUDA build) put in place of the lines they replace.

``python3 docker/pins.py core requirements.txt docker/requirements-gpu.txt`` prints the merged
list; the Dockerfile installs it and hands it to every optional baseline as pip constraints.
``tests/test_docker.py`` uses the same parser to check that every pin under docker/ is either
requirements.txt's or a documented optional baseline. Standard library only (it runs before the
image has a virtual environment).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# name==version, with an optional environment marker after ';' (ignored: the image is Linux).
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def normalize(name: str) -> str:
    """PEP 503 name: case, '-', '_' and '.' do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, tuple[str, str]]:
    """{normalized name: (name as written, version)} for every ``name==version`` line.

    Any other requirement line (a range, an URL, an option) is an error: the image pins
    exactly."""
    pins: dict[str, tuple[str, str]] = {}
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = PIN.match(line)
        if not m:
            raise ValueError(f"{path}:{number}: not an exact pin (name==version): {raw.strip()}")
        key = normalize(m.group(1))
        if key in pins:
            raise ValueError(f"{path}:{number}: {m.group(1)} pinned twice")
        pins[key] = (m.group(1), m.group(2))
    return pins


def merge(core: Path, overrides: Path) -> list[str]:
    """requirements.txt's pins in its order, each override in place of the line it replaces.

    An override must name a package of requirements.txt: the image changes versions, it does
    not add packages behind requirements.txt's back (optional baselines have their own file)."""
    pins = read_pins(core)
    changed = read_pins(overrides)
    unknown = sorted(v[0] for k, v in changed.items() if k not in pins)
    if unknown:
        raise ValueError(f"{overrides}: overrides {', '.join(unknown)}, which {core} does not pin")
    pins.update(changed)
    return [f"{name}=={version}" for name, version in pins.values()]


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "core":
        print("usage: python3 docker/pins.py core REQUIREMENTS OVERRIDES", file=sys.stderr)
        return 2
    try:
        lines = merge(Path(argv[1]), Path(argv[2]))
    except (OSError, ValueError) as e:
        print(f"pins: {e}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
