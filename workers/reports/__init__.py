"""Test and coverage reports a stage leaves behind: found, read safely, turned into typed results.

Pure building blocks (no database, no event loop; only files are read), run by the worker in a
thread after a stage's script ends:

- `collect`: finds the files named by the stage's `reports:` globs inside the workspace (caps,
  symlinks, escapes) and parses them all into one `StageReports`, never raising for bad input.
- `files`: opening a found file safely (what is really opened is checked; size caps).
- `junit`: JUnit XML as pytest, Jest, Go, Surefire/Gradle, PHPUnit, RSpec and .NET write it.
- `coverage`: Cobertura XML and lcov, line and branch rates overall and per file.
- `keys`: the stable key of a test across runs and frameworks.
- `safexml`: the hardened XML reader (no DTDs, entities or external references) both XML
  parsers use, and `ReportError`, the one error of this package.
- `text`: truncation with a marker and the lenient reading of `time` attributes.
"""
