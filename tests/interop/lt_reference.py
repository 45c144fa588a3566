"""lightning_template's own config loader and split-config mixin, loaded
as they are, for comparison with fulgur.

The loader's files import four jsonargparse helpers (Path,
get_config_read_mode, set_loader, set_dumper) and the mixin imports
Lightning's DeepSpeedStrategy; none of them takes part in merging, so small
stand-ins replace them and nothing else needs installing beyond
python3-yaml. The code comes from the reference tree beside the checkout
(../shared/lightning_template) when it is there, else from the copy under
tests/fixtures/lightning_template (same files, MIT, see its LICENSE)."""
import importlib
import os
import sys
import types

SRC = os.environ["FG_SOURCE_DIR"]
VENDORED = os.path.join(SRC, "tests", "fixtures", "lightning_template")
# CI checks out the repository with shared/ beside it; FG_LIGHTNING_TEMPLATE
# names another copy of the reference tree.
SHARED = os.path.normpath(os.environ.get("FG_LIGHTNING_TEMPLATE") or
                          os.path.join(SRC, "..", "shared", "lightning_template"))
HAVE_SHARED = os.path.isdir(os.path.join(SHARED, "library"))

_LOADER_REL = os.path.join("library", "lightning_template", "utils", "cli", "argument_parsers")
_MIXIN_REL = os.path.join("library", "lightning_template", "utils", "mixin")


def loader_dir():
    return os.path.join(SHARED, _LOADER_REL) if HAVE_SHARED else os.path.join(VENDORED, "loader")


def mixin_dir():
    return os.path.join(SHARED, _MIXIN_REL) if HAVE_SHARED else os.path.join(VENDORED, "mixin")


def _module(name, **attrs):
    m = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(m, k, v)
    sys.modules[name] = m
    return m


class _Path:
    """jsonargparse.Path, as far as the loader uses it: read a file."""

    def __init__(self, path, mode="fr"):
        self.path = path

    def get_content(self):
        with open(self.path) as f:
            return f.read()


def _package(name, path):
    p = _module(name)
    p.__path__ = [path]
    return p


def load():
    """-> (yaml_with_merge module, deep_update function, SplitNameMixin)."""
    _module("jsonargparse", Path=_Path, get_config_read_mode=lambda: "fr",
            set_loader=lambda name, fn: None, set_dumper=lambda name, fn: None)

    class DeepSpeedStrategy:  # never an instance here: no trainer
        pass

    _module("lightning")
    _module("lightning.pytorch")
    _module("lightning.pytorch.strategies", DeepSpeedStrategy=DeepSpeedStrategy)

    # The mixin imports `..cli.argument_parsers`: give the files the package
    # layout they come from.
    _package("ltref", os.path.dirname(loader_dir()))
    _package("ltref.cli", os.path.dirname(loader_dir()))
    _package("ltref.cli.argument_parsers", loader_dir())
    ywm = importlib.import_module("ltref.cli.argument_parsers.yaml_with_merge")
    du = importlib.import_module("ltref.cli.argument_parsers.deep_update")
    sys.modules["ltref.cli.argument_parsers"].deep_update = du.deep_update
    _package("ltref.mixin", mixin_dir())
    mixin = importlib.import_module("ltref.mixin.split_name_mixin")
    return ywm, du.deep_update, mixin.SplitNameMixin


def merge_file(ywm, path):
    """The loader's merge of one file, as LightningCLI runs it: jsonargparse
    reads the file and calls the loader from the file's own folder."""
    path = os.path.abspath(path)
    with open(path) as f:
        text = f.read()
    cwd = os.getcwd()
    os.chdir(os.path.dirname(path))
    try:
        return ywm.yaml_with_merge_load(text, path=os.path.basename(path))
    finally:
        os.chdir(cwd)


def split_config(mixin_cls, config):
    """SplitNameMixin.get_split_config with every split (no trainer)."""
    obj = mixin_cls.__new__(mixin_cls)
    obj.split_names = list(mixin_cls.SplitNameMap.keys())
    obj.trainer = None
    return obj.get_split_config(config)


def plain(v):
    """Tuples (!!python/tuple) as lists: fulgur has only lists."""
    if isinstance(v, tuple):
        v = list(v)
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def difference(a, b, path=""):
    """The first place two trees differ ('' when equal). Strict about types:
    True is not 1 and 1 is not 1.0, as a YAML reader tells them apart."""
    where = path or "(top level)"
    if type(a) is not type(b):
        return f"{where}: {a!r} ({type(a).__name__}) vs {b!r} ({type(b).__name__})"
    if isinstance(a, dict):
        for k in a:
            if k not in b:
                return f"{where}: key {k!r} only in the first"
        for k in b:
            if k not in a:
                return f"{where}: key {k!r} only in the second"
        for k in a:
            d = difference(a[k], b[k], f"{path}.{k}" if path else str(k))
            if d:
                return d
        return ""
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = difference(x, y, f"{path}.{i}" if path else str(i))
            if d:
                return d
        return ""
    if isinstance(a, float) and a != a and b != b:
        return ""
    return "" if a == b else f"{where}: {a!r} vs {b!r}"
