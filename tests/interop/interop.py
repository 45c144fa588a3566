"""Shared by the interop tests: the fulgur binary under test and TAP-style
checks ("ok - name" / "not ok - name detail"), ending with a summary and
the exit status ctest reads."""
import os
import sys

FULGUR = os.environ["FULGUR"]
# A build under ASan+UBSan or TSan (CMake's FG_SANITIZED): slower, and its
# memory figures are the sanitizer's.
SANITIZED = os.environ.get("FG_SANITIZED") == "1"
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


def write_csv(path, xs, ys):
    """A fulgur.data.CSV file of features xs (N x F) and integer labels ys,
    column `label`; repr keeps float32 values exact through the round trip."""
    with open(path, "w") as f:
        f.write(",".join(f"f{i}" for i in range(xs.shape[1])) + ",label\n")
        for x, y in zip(xs.tolist(), ys.tolist()):
            f.write(",".join(repr(v) for v in x) + f",{y}\n")


def finish():
    print(f"{_passed} passed, {len(_failures)} failed")
    sys.exit(1 if _failures else 0)
