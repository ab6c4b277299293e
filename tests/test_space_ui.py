"""space.ui pieces that the app and browser tests cannot reach on this host."""

import sys
import types

from rtsr.serving import serve
from space.ui import on_gpu


def test_gpu_work_runs_under_zerogpu_s_decorator_where_spaces_is_present(monkeypatch):
    assert on_gpu(serve) is serve  # no spaces package here: the function as it is

    calls = []

    def gpu(duration: int):
        def decorate(fn):
            calls.append((fn, duration))
            return lambda *a, **k: ("on gpu", fn(*a, **k))

        return decorate

    # ZeroGPU's package is only on Hugging Face's GPU Spaces; its decorator's shape is GPU(duration=...)(fn)
    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    wrapped = on_gpu(len)
    assert calls == [(len, 60)]
    assert wrapped("abc") == ("on gpu", 3)
