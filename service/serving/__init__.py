"""Serving: the ASGI side. Flask (WSGI) runs in a greenlet on the server's event loop; cache
hits are answered before it."""
