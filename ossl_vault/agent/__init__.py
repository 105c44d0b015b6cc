"""The long-running readers: the line protocol, ``serve --stdio`` and the agent.

- ``protocol``: the JSON line protocol of docs/protocol.md (schemas, sessions).
- ``serve``: what each request does, over the operations.
- ``keyring``: what a reader holds in memory: unlocked identities, data keys, values.
- ``daemon``: the agent process: its socket, its lifetime, its hardening.
- ``client``: the light client of the agent's socket, used before the CLI loads.
"""
