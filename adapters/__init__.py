"""HTTP in and out, and the command line: everything that touches a socket or a terminal.

Adapters import the engine, never the reverse, and translate backend exceptions into
`talkstream.engine.errors` at their boundary.
"""
