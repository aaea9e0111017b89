"""Files the tests read, kept inside the repository so a clone runs every test that needs only
files: the upstream CRD and OpenAPI schemas (tests/data/schemas, Apache-2.0, sources in its
README) and the coco8 sample dataset (tests/data/coco8, licences in its README).
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
SCHEMAS = DATA / "schemas"
COCO8 = DATA / "coco8"
