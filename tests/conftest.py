"""Test-wide setup: without CUDA, Triton kernels run in its CPU interpreter; `--update-golden`."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    # must be set before anything imports triton (torch._dynamo may, through FlexAttention)
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite the golden files of the generated code instead of comparing")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
