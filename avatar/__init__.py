"""Photo + speech -> video and audio frames: the portrait and its face, animation, speech, fetching.

Imports the engine (for errors) and nothing of the transports or adapters.
"""
