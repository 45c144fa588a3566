"""libfulgur's metrics through ctypes, for the metric interop tests: the
real metric objects, created from YAML by the registry as the trainer does,
updated with torch tensors and computed into Python values."""
import ctypes

import torch

# ---- libfulgur through ctypes -------------------------------------------------------

KIND_METRIC = 4
DTYPES = {torch.float32: 0, torch.float64: 1, torch.int64: 2}
V_DOUBLE, V_TENSOR, V_DICT = 3, 5, 7


class Lib:
    def __init__(self, path):
        L = ctypes.CDLL(path)
        P, I, S = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        PP = ctypes.POINTER(ctypes.c_void_p)
        sig = {
            "fg_node_parse": (I, [ctypes.c_char_p, S, ctypes.c_char_p, PP, PP]),
            "fg_node_free": (None, [P]),
            "fg_registry_create": (I, [P, ctypes.c_char_p, I, PP, PP, PP]),
            "fg_tensor_from_data": (I, [P, I, ctypes.POINTER(ctypes.c_int64), I, PP, PP]),
            "fg_value_dict": (P, []),
            "fg_value_tensor": (P, [P]),
            "fg_value_dict_set": (None, [P, ctypes.c_char_p, P]),
            "fg_value_free": (None, [P]),
            "fg_value_kind_of": (I, [P]),
            "fg_value_as_double": (ctypes.c_double, [P]),
            "fg_value_as_tensor": (P, [P]),
            "fg_value_len": (S, [P]),
            "fg_value_dict_key_at": (ctypes.c_char_p, [P, S]),
            "fg_value_dict_value_at": (P, [P, S]),
            "fg_tensor_ndim": (I, [P]),
            "fg_tensor_size": (ctypes.c_int64, [P, I]),
            "fg_tensor_dtype": (I, [P]),
            "fg_tensor_copy_out": (I, [P, I, P, S, PP]),
            "fg_metric_update": (I, [P, P, PP]),
            "fg_metric_compute": (I, [P, PP, PP]),
            "fg_metric_reset": (None, [P]),
            "fg_metric_free": (None, [P]),
        }
        for name, (res, args) in sig.items():
            f = getattr(L, name)
            f.restype, f.argtypes = res, args
        self.L = L
        self.libc = ctypes.CDLL(None)
        self.libc.free.argtypes = [P]

    def _err(self, e):
        msg = ctypes.string_at(e.value).decode() if e.value else ""
        if e.value:
            self.libc.free(e.value)
        return msg

    def metric(self, yaml):
        n, e, obj = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        text = yaml.encode()
        if self.L.fg_node_parse(text, len(text), b"<test>", ctypes.byref(n), ctypes.byref(e)):
            raise RuntimeError(self._err(e))
        rc = self.L.fg_registry_create(n, b"m", KIND_METRIC, ctypes.byref(obj), None, ctypes.byref(e))
        self.L.fg_node_free(n)
        if rc:
            raise RuntimeError(self._err(e))
        return obj

    def _tensor(self, t):
        t = t.contiguous()
        shape = (ctypes.c_int64 * max(t.ndim, 1))(*t.shape)
        out, e = ctypes.c_void_p(), ctypes.c_void_p()
        if self.L.fg_tensor_from_data(ctypes.c_void_p(t.data_ptr()), DTYPES[t.dtype], shape,
                                      t.ndim, ctypes.byref(out), ctypes.byref(e)):
            raise RuntimeError(self._err(e))
        return out

    def update(self, m, preds, target):
        kw = self.L.fg_value_dict()
        self.L.fg_value_dict_set(kw, b"preds", self.L.fg_value_tensor(self._tensor(preds)))
        self.L.fg_value_dict_set(kw, b"target", self.L.fg_value_tensor(self._tensor(target)))
        e = ctypes.c_void_p()
        rc = self.L.fg_metric_update(m, kw, ctypes.byref(e))
        self.L.fg_value_free(kw)
        if rc:
            raise RuntimeError(self._err(e))

    def _py(self, v):
        k = self.L.fg_value_kind_of(v)
        if k == V_DOUBLE:
            return self.L.fg_value_as_double(v)
        if k == V_DICT:
            return {self.L.fg_value_dict_key_at(v, i).decode(): self._py(self.L.fg_value_dict_value_at(v, i))
                    for i in range(self.L.fg_value_len(v))}
        if k == V_TENSOR:
            t = self.L.fg_value_as_tensor(v)
            shape = [self.L.fg_tensor_size(t, d) for d in range(self.L.fg_tensor_ndim(t))]
            dtype = {0: torch.float32, 1: torch.float64, 2: torch.int64}[self.L.fg_tensor_dtype(t)]
            out = torch.empty(shape, dtype=dtype)
            if self.L.fg_tensor_copy_out(t, DTYPES[dtype], ctypes.c_void_p(out.data_ptr()),
                                         out.numel() * out.element_size(), None):
                raise RuntimeError("copy_out failed")
            return out
        raise RuntimeError(f"unexpected value kind {k}")

    def compute(self, m):
        r, e = ctypes.c_void_p(), ctypes.c_void_p()
        if self.L.fg_metric_compute(m, ctypes.byref(r), ctypes.byref(e)):
            raise RuntimeError(self._err(e))
        out = self._py(r)
        self.L.fg_value_free(r)
        return out

    def run(self, yaml, batches, reset_first=None):
        """Creates the metric, feeds every (preds, target) batch, computes."""
        m = self.metric(yaml)
        if reset_first:
            for p, t in reset_first:
                self.update(m, p, t)
            self.L.fg_metric_reset(m)
        for p, t in batches:
            self.update(m, p, t)
        out = self.compute(m)
        self.L.fg_metric_free(m)
        return out


def split(n, g):
    """Random batch sizes (some of 1) summing to n."""
    sizes, left = [], n
    while left:
        s = min(left, int(torch.randint(1, 90, (1,), generator=g)))
        sizes.append(s)
        left -= s
    return sizes


def batches_of(preds, target, sizes):
    return list(zip(torch.split(preds, sizes), torch.split(target, sizes)))


def cfg(cls, **args):
    inner = ", ".join(f"{k}: {'null' if v is None else v}" for k, v in args.items())
    return f"{{class_path: {cls}, init_args: {{{inner}}}}}"
