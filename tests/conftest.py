"""Shared fixtures: where the real material lives, and quiet TensorFlow for every test process."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO = Path(__file__).resolve().parents[1]
MATERIAL = REPO.parent / "shared" / "material"


def material_path(*parts: str) -> Path:
    """A file of ../shared/material, or a clean skip when the material is not beside this checkout."""
    p = MATERIAL.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real test material not found: {p} (expected ../shared/material beside the repo)")
    return p


@pytest.fixture(scope="session")
def material():
    return material_path


from zoo import zoo_dir  # noqa: E402,F401  (session fixture: one export folder for the whole run)
