"""An ASGI app for the app-pool tests, run by Debian's uvicorn (--fd 3):
it answers APP_ANSWER (from the pool's environment) on every request."""
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = (os.environ.get("APP_ANSWER", "hello") + "\n").encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
