"""A WSGI app for the app-pool tests, run by Debian's gunicorn unmodified:
it answers APP_ANSWER (from the pool's environment) on every request."""
import os


def app(environ, start_response):
    body = (os.environ.get("APP_ANSWER", "hello") + "\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
