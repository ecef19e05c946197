"""WebRTC backends behind one small base class (aiortc for real peers, an in-memory fake for tests).

Transports translate their backend's callbacks into engine inputs and never run engine logic inside a
backend's event handler. The engine never imports a transport; transports import the engine.
The backends arrive with the embedded server and the client (issues 3 and 4).
"""
