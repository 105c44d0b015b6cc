"""The bytes of docs/format.md: each module says which section it implements.

- ``records``: the TSV record lines and their canonical encoding (sections 2-4).
- ``seal``: one secret version's data key, encryption and record MAC (section 5).
- ``wrapping``: wrapping a data key for each recipient kind (section 6).
- ``matching``: which identity can open which wrap.

Pure functions over bytes and openssl: no files, no locks, no printing.
"""
