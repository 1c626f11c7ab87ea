"""Copies of expected/ with every band back to "to be measured", for tests whose fake timers
produce speedups that adopted reference bands would (rightly) reject."""

import json
from pathlib import Path

REPO_EXPECTED = Path(__file__).resolve().parent.parent / "expected"


def unmeasured_bands_text(name: str) -> str:
    doc = json.loads((REPO_EXPECTED / name).read_text())
    doc["bands"] = [{k: band[k] for k in ("gpu", "case", "batch", "launch_bound") if k in band}
                    | {"status": "to be measured"} for band in doc["bands"]]
    return json.dumps(doc, indent=1)


def unmeasured_expected(dest: Path) -> Path:
    """``dest`` filled with expected/'s JSON files, every band unmeasured."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in REPO_EXPECTED.glob("*.json"):
        doc = json.loads(path.read_text())
        text = unmeasured_bands_text(path.name) if "bands" in doc else path.read_text()
        (dest / path.name).write_text(text)
    return dest
