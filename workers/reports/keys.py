"""The stable key of a test: the same test gets the same key in every run, whatever wrote it.

The exact rule of `case_key(classname, name, file)`:

1. **Scope.** The classname, white space collapsed (stripped; every run of white space becomes
   one space). Only when the classname is empty does the file stand in for it: backslashes
   become `/`, a leading `./` is dropped and so is the last segment's extension
   (`tests/test_x.py` → `tests/test_x`). The file is not used otherwise, because tools disagree
   on writing it: pytest writes it with `junit_family=xunit1` and not with xunit2, .NET writes
   the test DLL's path, PHPUnit an absolute path that moves with the checkout.
2. **Separators.** In the scope, `/`, `\\` and `::` become `.`, runs of `.` collapse into one
   and leading or trailing dots go. So pytest's `tests.test_x` and the file `tests/test_x.py`
   give one scope, and Go's package path `github.com/acme/app/pkg` becomes
   `github.com.acme.app.pkg` whichever Go tool wrote it.
3. **Name.** The name, white space collapsed; everything else is kept as written, so
   parametrisation (`test_add[1-2]`, `Add(a: 1, b: 2)`, `TestX/sub_case`) tells cases apart.
4. **Key.** The first 10 bytes of BLAKE2b over `scope + "\\n" + name` (UTF-8), as 20 lowercase
   hex digits. White space is collapsed before, so the separator cannot occur inside either part.

A key is URL-safe as it is, and short whatever the name's length (it is computed from the full
name and classname, before any truncation). It names a test, not where it ran: the same test in
two matrix legs or stages has one key, its history tells them apart by stage.
"""

from __future__ import annotations

import hashlib
import re

_SEPARATORS = re.compile(r"::|[/\\]")
_DOTS = re.compile(r"\.{2,}")
KEY_BYTES = 10


def case_key(classname: str, name: str, file: str | None = None) -> str:
    """The test's key by the rule above: 20 lowercase hex digits."""
    material = f"{case_scope(classname, file)}\n{_collapse(name)}"
    return hashlib.blake2b(material.encode("utf-8", "surrogatepass"), digest_size=KEY_BYTES).hexdigest()


def case_scope(classname: str, file: str | None = None) -> str:
    """Steps 1 and 2 of the rule: the normalised classname, or the file standing in for it."""
    scope = _collapse(classname)
    if not scope and file:
        scope = _module_path(_collapse(file))
    scope = _DOTS.sub(".", _SEPARATORS.sub(".", scope))
    return scope.strip(".")


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _module_path(file: str) -> str:
    path = file.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    head, slash, last = path.rpartition("/")
    stem, dot, _ = last.rpartition(".")
    if dot and stem:  # `.hidden` keeps its name; `test_x.py` loses `.py`
        last = stem
    return head + slash + last
