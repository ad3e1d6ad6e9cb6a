"""Peer: the bare BlackSheep JSON hello-world, a second ceiling beside bare Starlette."""

from blacksheep import Application, json

app = Application()


async def hello():
    return json({"hello": "world"})


app.router.add_get("/", hello)
