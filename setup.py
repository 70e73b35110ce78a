"""Lists the ternfpga.* packages found under the top-level folders (package-dir is in pyproject.toml)."""
from pathlib import Path

from setuptools import setup

FOLDERS = ("quant", "sim", "host", "rtl", "boards")


def _packages() -> list[str]:
    names = []
    for folder in FOLDERS:
        for init in sorted(Path(folder).rglob("__init__.py")):
            parts = init.parent.parts
            names.append(".".join(("ternfpga",) + parts))
    return names


setup(packages=_packages(), package_data={"ternfpga.sim": ["**/*.cpp", "**/*.h"], "ternfpga.boards": ["**/*.tcl", "**/*.xdc", "**/*.dts"]})
