"""The smallest Tornado server answering a POST with a short JSON body: the benchmark's baseline.

python bench/bare_server.py PORT
"""

import asyncio
import sys

import tornado.web


class BareHandler(tornado.web.RequestHandler):
    def post(self):
        self.set_header("Content-Type", "application/json")
        self.finish(b'{"token":"x"}\n')


async def serve(port):
    app = tornado.web.Application([(r"/v0/token/integration", BareHandler)])
    app.listen(port, address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
