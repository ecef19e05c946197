"""WebRTC for the engine's ports: aiortc peers for the server (`aiortc_server`) and the client
(`aiortc_client`), what reaches into aiortc and aioice (`aiortc_patches`), an in-memory fake (`memory`),
and the client's `sink`.

What it must never do: run engine logic inside a backend's event handler (handlers only report inputs).
"""
