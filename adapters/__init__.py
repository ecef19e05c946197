"""HTTP in (`server`) and out (`http`), cassettes, scenarios and the command line: everything that touches
a socket or a terminal.

What it must never do: let a backend exception out; it becomes a `talkstream.engine.errors` class here.
"""
