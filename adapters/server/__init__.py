"""The server's side of HTTP: D-ID's API as an aiohttp app (`app`), keys and request rates (`auth`), the
sockets it listens on and the process it runs in (`serving`), and the one function that assembles the whole
server from its settings (`build`). Users import these from `talkstream`."""
