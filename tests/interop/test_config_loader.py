"""fulgur's config loader against lightning_template's own (lt_reference.py).

For every YAML file of the reference tree (../shared/lightning_template, or
the copy in tests/fixtures/lightning_template) and of
tests/fixtures/config_loader, the Python loader's merge and
`fulgur print-config --no-validate` must give the same tree, compared after
both are read back into Python objects. The three bugs that the reference
README lists are the exception: for them the test asserts that Python does
what the README says and that fulgur does what CONFIG.md says. The split
configs of tests/fixtures/config_loader/split_cases.yaml are checked against
SplitNameMixin.get_split_config here (unit/test_config checks fulgur
against the same file)."""
import copy
import glob
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import yaml  # noqa: E402

import lt_reference as ref  # noqa: E402
from interop import FULGUR, SANITIZED, check, finish  # noqa: E402

FIX = os.path.join(ref.SRC, "tests", "fixtures")
CASES = os.path.join(FIX, "config_loader")
BUGS = os.path.join(CASES, "python_bugs")
STRICTER = os.path.join(CASES, "stricter")

ywm, deep_update, SplitNameMixin = ref.load()


# Under a sanitizer, four print-configs at once on a loaded machine take
# far longer than a minute each; a slow run is not a finding.
MERGE_TIMEOUT = 600 if SANITIZED else 60


def fulgur_merge(path):
    """-> (tree, None) or (None, error text)."""
    p = subprocess.run([FULGUR, "print-config", "--no-validate", "--config", path],
                       capture_output=True, text=True, timeout=MERGE_TIMEOUT)
    if p.returncode != 0:
        return None, p.stderr.strip() or f"exit {p.returncode}"
    # The reference's own YAML reader: its float rule (1e-3) is fulgur's.
    return yaml.load(p.stdout, Loader=ywm.DefaultLoader), None


def python_merge(path):
    try:
        return ref.plain(ref.merge_file(ywm, path)), None
    except Exception as e:  # the reference's errors are data here
        return None, f"{type(e).__name__}: {e}"


def rel(path):
    for root in (ref.SHARED, FIX):
        if path.startswith(root + os.sep):
            return os.path.relpath(path, root)
    return path


def yaml_files(root):
    return sorted(f for f in glob.glob(os.path.join(root, "**", "*.y*ml"), recursive=True)
                  if f.endswith((".yaml", ".yml")))


# ---- the vendored copy is the reference's own ----------------------------------
if ref.HAVE_SHARED:
    pairs = [(os.path.join(ref.SHARED, ref._LOADER_REL, n), os.path.join(ref.VENDORED, "loader", n))
             for n in ("deep_update.py", "yaml_with_merge.py")]
    pairs.append((os.path.join(ref.SHARED, ref._MIXIN_REL, "split_name_mixin.py"),
                  os.path.join(ref.VENDORED, "mixin", "split_name_mixin.py")))
    for tree in ("toy_project/configs", "project_template/configs"):
        for f in yaml_files(os.path.join(ref.SHARED, tree)):
            pairs.append((f, os.path.join(ref.VENDORED, os.path.relpath(f, ref.SHARED))))
    for a, b in pairs:
        with open(a, "rb") as x, open(b, "rb") as y:
            check(f"vendored copy of {os.path.relpath(a, ref.SHARED)} is current",
                  x.read() == y.read())
    reference_files = yaml_files(ref.SHARED)
else:
    print("# ../shared/lightning_template is absent: using tests/fixtures/lightning_template")
    reference_files = [f for f in yaml_files(ref.VENDORED)]

# ---- every file: the same merge ----------------------------------------------------
own_files = [f for f in yaml_files(CASES)
             if not f.startswith((BUGS + os.sep, STRICTER + os.sep)) and os.path.basename(f) != "split_cases.yaml"]
# Each fulgur run is mostly start-up (loading libtorch): run a few at once
# so that a loaded machine stays inside the test's time limit.
with ThreadPoolExecutor(max_workers=4) as pool:
    fulgur_results = dict(zip(reference_files + own_files,
                              pool.map(fulgur_merge, reference_files + own_files)))
compared = differed = 0
for f in reference_files + own_files:
    want, perr = python_merge(f)
    got, ferr = fulgur_results[f]
    compared += 1
    if perr:
        # A file the reference cannot load must not load in fulgur either.
        ok, detail = ferr is not None, f"python: {perr}; fulgur loaded it"
    elif ferr:
        ok, detail = False, f"fulgur: {ferr}"
    else:
        d = ref.difference(want, got)
        ok, detail = not d, f"python vs fulgur at {d}"
    differed += not ok
    check(f"merge of {rel(f)}", ok, detail)
print(f"# compared {compared} files ({len(reference_files)} of lightning_template, "
      f"{len(own_files)} of tests/fixtures/config_loader): {differed} differ")
check("the reference tree has YAML files to compare", len(reference_files) >= 10,
      f"found {len(reference_files)}")

# ---- the bugs the reference README lists: fulgur does what CONFIG.md says ---------
bugs = {
    # file: (what the Python loader gives, what CONFIG.md says)
    "insert_past_end.yaml": ({"l": ["a", "b", "c", [3, "X"], [7, "Y"]]},
                             {"l": ["a", "b", "c", "X", "Y"]}),
    "insert_below_start.yaml": ("KeyError: '__delete__'", {"l": ["X", "a", "b", "c"]}),
    "delete_false.yaml": ({"l": ["b", "c", "Z"]}, {"l": ["a", "b", "c", "Z"]}),
}
for name, (python_says, config_md_says) in bugs.items():
    f = os.path.join(BUGS, name)
    want, perr = python_merge(f)
    if isinstance(python_says, str):
        check(f"python bug still there: {name}", perr == python_says, f"python: {want!r} {perr}")
    else:
        check(f"python bug still there: {name}", not ref.difference(python_says, want),
              f"python: {want!r} {perr}")
    got, ferr = fulgur_merge(f)
    d = ferr or ref.difference(config_md_says, got)
    check(f"fulgur follows CONFIG.md: {name}", not d, d)

# ---- where fulgur is stricter: an error where Python loses data silently ---------
stricter = {
    # file: (what the Python loader gives, what fulgur's error says)
    "bare_list_base.yaml": ({"callbacks": {}}, "callbacks.__base__: the bases of a mapping must be "
                            "mappings, got a list"),
    "duplicate_key.yaml": ({"trainer": {"max_epochs": 2}}, "duplicate key 'max_epochs'"),
}
for name, (python_says, fulgur_says) in stricter.items():
    f = os.path.join(STRICTER, name)
    want, perr = python_merge(f)
    check(f"python loads {name} as the test says", not perr and not ref.difference(python_says, want),
          f"python: {want!r} {perr}")
    got, ferr = fulgur_merge(f)
    check(f"fulgur rejects {name}", ferr is not None and fulgur_says in ferr and f"{name}:" in ferr,
          ferr or repr(got))

# ---- split configs: the fixture's expectations are Python's -------------------------
with open(os.path.join(CASES, "split_cases.yaml")) as fh:
    split_cases = yaml.load(fh, Loader=ywm.DefaultLoader)
check("split_cases.yaml has cases", len(split_cases) >= 4)
for case in split_cases:
    res = ref.plain(ref.split_config(SplitNameMixin, copy.deepcopy(case["config"])))
    d = ref.difference(case["expect"], res)
    check(f"split case {case['name']}: SplitNameMixin gives the fixture's expectation", not d, d)

# ---- errors still name the place --------------------------------------------------
bad = os.path.join(CASES, "errors")
for name, want in (("bad_index.yaml", "bad_index.yaml:3:"), ("missing_base.yaml", "missing_base.yaml:1:")):
    f = os.path.join(bad, name)
    got, ferr = fulgur_merge(f)
    check(f"error in {name} names file:line:col", ferr is not None and want in ferr, ferr or got)

finish()
