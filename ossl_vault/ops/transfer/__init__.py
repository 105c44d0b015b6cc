"""Export and import (docs/transfer.md).

- ``sealed``: encrypted exports: CMS files and bundles, and storing imports.
- ``plain``: plaintext formats: ``.env``, JSON and a ``pass`` store.
"""
