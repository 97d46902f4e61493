"""Refresh the pictures in docs/ from real browser runs (tests never write into docs/ themselves).

    .venv/bin/python scripts/docs_screenshots.py            # editor, new-user journey, Talk page (real stack)
    .venv/bin/python scripts/docs_screenshots.py journey    # only the tests whose id contains "journey"

It runs the browser tests with ``AVATARGRAPH_SCREENSHOT_DIR`` set to a temporary folder, where each test saves its
screenshots under the names below, then copies the PNGs it knows into docs/ and lists what changed. Needs
Debian's chromium and playwright (requirements/test.txt); the Talk page picture needs the real stack's models.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# test (pytest node id) -> the screenshots it saves
SHOTS: dict[str, tuple[str, ...]] = {
    "tests/test_browser_editor.py::test_editor_loads_runs_templates_and_saves": ("editor.png",),
    "tests/test_journey_browser.py": ("journey-1-first-screen.png", "journey-2-say-text.png",
                                      "journey-3-render-avatar.png", "journey-4-transcript.png",
                                      "journey-5-cancelled.png", "journey-6-talk.png"),
    "tests/test_talk_browser.py::test_talk_page_real_stack": ("talk.png", "talk-phone.png"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="run only the tests whose id contains one of these words")
    args = parser.parse_args()
    chosen = {test: shots for test, shots in SHOTS.items()
              if not args.only or any(word in test for word in args.only)}
    if not chosen:
        parser.error(f"no test matches {args.only}; known: {', '.join(SHOTS)}")
    with tempfile.TemporaryDirectory(prefix="avatargraph-shots-") as tmp:
        env = {**os.environ, "AVATARGRAPH_SCREENSHOT_DIR": tmp}
        run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-x", "-q", "-s", *chosen],
                             cwd=ROOT, env=env)
        copied = []
        for shots in chosen.values():
            for name in shots:
                source = Path(tmp) / name
                if source.is_file():
                    shutil.copyfile(source, DOCS / name)
                    copied.append(name)
        print(f"copied into docs/: {', '.join(copied) or 'nothing'}")
        missing = [name for shots in chosen.values() for name in shots if name not in copied]
        if missing:
            print(f"not produced (test failed or skipped): {', '.join(missing)}", file=sys.stderr)
    return run.returncode or (1 if missing else 0)


if __name__ == "__main__":
    sys.exit(main())
