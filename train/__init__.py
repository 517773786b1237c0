"""`python -m train`: fit, publish, list and promote models.

function/ deploys alone, so its serving package is not installed; the trainer
imports that very package (storage, manifest) from the folder instead of a copy.
"""

import sys
from pathlib import Path

_FUNCTION_DIR = str(Path(__file__).resolve().parent.parent / "function")
if _FUNCTION_DIR not in sys.path:
    sys.path.insert(0, _FUNCTION_DIR)
