# Only the optional C accelerator lives here; everything else is in pyproject.toml. Without a C compiler the
# build of the extension is skipped (optional=True) and the pure-Python code does the same work.
from setuptools import Extension, setup

setup(ext_modules=[Extension("sse_capture_addon._speedups", ["sse_capture_addon/_speedups.c"], optional=True,
                             extra_compile_args=["-O2"])])
