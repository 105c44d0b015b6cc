"""The command line: the only package that prints and exits.

- ``entry``: the console script; a plain ``get`` goes to a running agent before click loads.
- ``main``: the click group and the core commands (init, put, get, list, rm, rotate, fsck).
- ``common``: what every command module shares (context, error line, options).
- ``recipients``, ``audit``, ``transfer``, ``recovery``, ``scripts``: one module per
  command group, loaded only when named.
- ``clipboard``: ``get --clip`` and the restorer that clears it.
"""
