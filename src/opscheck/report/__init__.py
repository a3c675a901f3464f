"""Reports of a run: the run directory, summary.json, the HTML and JUnit files, charts."""
