"""Imported first by every benchmark that runs opscheck: a user's environment.

The development venv also holds the self-tests' dependencies, and three of them register
pytest plugins (KMock's, pytest-asyncio, hypothesis') that add about a second to every
pytest start-up; `pip install 'opscheck[all]'` installs none of them, so the pytest runs a
benchmark starts (they inherit this variable) leave them out.
"""

import os

TEST_ONLY_PLUGINS = "-p no:kmock -p no:asyncio -p no:hypothesispytest"
os.environ["PYTEST_ADDOPTS"] = f"{os.environ.get('PYTEST_ADDOPTS', '')} {TEST_ONLY_PLUGINS}".strip()
