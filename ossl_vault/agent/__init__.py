"""The long-running readers: the line protocol, ``serve --stdio`` and the agent.

- ``protocol``: the JSON line protocol of docs/protocol.md (schemas, sessions).
- ``serve``: what each request does, over the operations.
- ``daemon``: the agent, which holds unlocked identities and data keys in memory.
- ``client``: the light client of the agent's socket, used before the CLI loads.
"""
