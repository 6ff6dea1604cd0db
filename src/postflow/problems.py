"""Located problems: the one shape every user-facing input error takes.

Validation, event parsing, config loading and test-file loading all report through
:class:`Problem`, so the CLI prints every mistake the same way
(``FILE:LINE:COL: error: MESSAGE``) and sorts them by file, line and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Problem:
    """One error or warning, pointing at a place in a file (line and column are 1-based)."""

    file: str
    line: int
    col: int
    severity: str = field(default="error")  # "error" | "warning"
    message: str = field(default="")

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class ProblemsError(Exception):
    """Raised when input cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class MissingPath(Exception):
    """A file or directory named on the command line (or as the configuration) does not
    exist: a usage error, exit status 2."""
