"""Support shared by tests/, bench/ and scripts/: real test inputs, tiny models and jobs, child processes.

Development only: not part of the wheel or the image (pyproject.toml packages only ``model``, ``service``
and ``fusion_client``). Importing any module here has no side effects: no paths, signals or threads.
"""
