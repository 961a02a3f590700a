import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def backend():
    from tiny import tiny_backend

    return tiny_backend()
