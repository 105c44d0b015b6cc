"""The bytes of docs/format.md: each module says which section it implements.

- ``fields``: names, canonical base64 and numbers, the field encodings (section 2).
- ``records``: the record lines of ``vault.tsv`` and their strict parser (section 2).
- ``seal``: one version's data key, value encryption and record MAC, and the
  value's decryption (sections 3 and 5).
- ``wrapping``: a data key wrapped for each recipient kind, and unwrapped (section 4).
- ``matching``: which identity opens which wrap (section 6, step 5).

Pure functions over bytes and openssl: no files, no locks, no printing.
"""
