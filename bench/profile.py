"""`python -m bench.profile DIR`: the top costs of each process py-spy sampled during a bench run
(`python -m bench --profile DIR`).

py-spy's raw format is one collapsed stack per line, `frame;frame;…;leaf count`, each frame
`function (path:line)`. Only the thread holding the GIL is sampled (`--gil`), so a process's
samples are its Python CPU time (at `PROFILE_RATE_HZ`; C code that releases the GIL — a socket
read, a thread's `subprocess` wait — is not counted). Per process this prints where the time was spent *itself*
(the leaf frames, grouped by function) and which of Comet's own functions the time was spent
*under* (inclusive, each function counted once per stack), the two views a profile is read in.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")
_ROOT = f"{Path(__file__).resolve().parents[1]}/"
_OWN_PACKAGES = ("api/", "cli/", "config/", "db/", "events/", "orchestrator/", "schemas/", "workers/")


@dataclass(frozen=True)
class Profile:
    """One process's samples: the total, and the counts per leaf and per own inclusive frame."""

    samples: int
    leaves: Counter[str]
    own: Counter[str]


def frame_name(frame: str) -> str:
    """`function (path:line)` → `function (short/path.py)`: lines dropped so a function's samples
    add up; site-packages and the standard library cut to the module's path."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["path"].removeprefix(_ROOT)
    for marker in ("site-packages/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['function']} ({path})"


def is_own(name: str) -> bool:
    """A frame of Comet's own code (its path relative to the checkout, in one of its packages)."""
    path = name.rsplit("(", 1)[-1]
    return path.startswith(_OWN_PACKAGES)


def parse(lines: list[str]) -> Profile:
    leaves: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";")]
        # py-spy begins each stack with the thread ("process 1:\"…\"", "thread (0x…)"): not code.
        frames = [f for f in frames if "(" in f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        leaves[frames[-1]] += count
        for name in set(frames):
            if is_own(name):
                own[name] += count
    return Profile(total, leaves, own)


def render(name: str, profile: Profile, rate_hz: int, top: int) -> str:
    seconds = profile.samples / rate_hz
    out = [f"{name}: {profile.samples} samples ≈ {seconds:.1f} CPU-s"]
    for title, counter in (
        ("self (leaf frames)", profile.leaves),
        ("under (Comet's own functions, inclusive)", profile.own),
    ):
        out.append(f"  {title}:")
        for frame, count in counter.most_common(top):
            out.append(f"    {100 * count / max(profile.samples, 1):5.1f} %  {frame}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--top", type=int, default=15, help="rows per view (15)")
    parser.add_argument("--rate", type=int, default=100, help="the sampling rate used, Hz (100)")
    args = parser.parse_args(argv)
    files = sorted(args.directory.glob("*.txt"))
    if not files:
        print(f"bench.profile: no py-spy raw files (*.txt) in {args.directory}", file=sys.stderr)
        return 2
    for path in files:
        profile = parse(path.read_text(errors="replace").splitlines())
        print(render(path.stem, profile, args.rate, args.top))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
