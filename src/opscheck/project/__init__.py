"""What `opscheck init` copies into a new project: the checks, the fixtures, the inventories.

In the wheel, the repository's checks/, fixtures/ and inventories/ folders are installed
as this package's data (opscheck.project.checks, .fixtures, .inventories), never as
top-level packages.
"""
