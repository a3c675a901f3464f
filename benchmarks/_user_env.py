"""Imported first by every benchmark that runs opscheck: a user's environment.

The development venv also holds the self-tests' dependencies, and three of them register
pytest plugins (KMock's, pytest-asyncio, hypothesis') that add about a second to every
pytest start-up; `pip install 'opscheck[all]'` installs none of them, so the pytest runs a
benchmark starts (they inherit this variable) leave them out.
"""

import os

TEST_ONLY_PLUGINS = "-p no:kmock -p no:asyncio -p no:hypothesispytest"
os.environ["PYTEST_ADDOPTS"] = f"{os.environ.get('PYTEST_ADDOPTS', '')} {TEST_ONLY_PLUGINS}".strip()

# This machine's shell sets PYTHONDONTWRITEBYTECODE=1: every Python start then compiles every
# module of the checkout from source, and pytest rewrites every check module's assertions
# again (it caches them in __pycache__ only when bytecode may be written). A user's machine
# keeps both caches (pip compiles an installed wheel's modules at install time), so the runs
# a benchmark starts do too; each figure is a median of several runs, the first one warms them.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
