"""Shared by the interop tests: the fulgur binary under test and TAP-style
checks ("ok - name" / "not ok - name detail"), ending with a summary and
the exit status ctest reads."""
import os
import sys

FULGUR = os.environ["FULGUR"]
_failures = []
_passed = 0


def check(name, cond, detail=""):
    global _passed
    if cond:
        _passed += 1
        print(f"ok - {name}")
    else:
        _failures.append(name)
        print(f"not ok - {name} {detail}")


def finish():
    print(f"{_passed} passed, {len(_failures)} failed")
    sys.exit(1 if _failures else 0)
