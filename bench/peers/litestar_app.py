"""Peer: Litestar with its JWTAuth, the user read through advanced-alchemy (SQLAlchemy async session).

    GET  /me     the current user (JWTAuth: `Authorization: Bearer <token>`; the retrieve_user_handler
                 reads the user by the token's `sub` through an advanced-alchemy repository)
    POST /login  {"username", "password"}: the password checked against the stored hash (advanced-
                 alchemy's PasswordHash column, Argon2Hasher = argon2-cffi's PasswordHasher at its
                 defaults), off the event loop (sync_to_thread), then `{"token": ...}`.

Environment: DATABASE_URL (sqlite+aiosqlite:///... or postgresql+asyncpg://...), SECRET_KEY.
`python litestar_app.py seed N` creates the table and users bench1..benchN (one hash, made by the
column's own hasher) and prints the stored hash, for the results to name the hasher.
"""

import asyncio
import json
import os
import sys
from datetime import datetime
from typing import Any

from advanced_alchemy.base import BigIntBase
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
    repository,
)
from advanced_alchemy.types import PasswordHash
from advanced_alchemy.types.password_hash.argon2 import Argon2Hasher
from litestar import Litestar, Request, get, post
from litestar.concurrency import sync_to_thread
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.security.jwt import JWTAuth, Token
from msgspec import Struct
from sqlalchemy import String, column, func, table
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

DATABASE_URL = os.environ["DATABASE_URL"]
SECRET = os.environ.get("SECRET_KEY", "")
PASSWORD = "bench-password-1"


class User(BigIntBase):
    __tablename__ = "litestar_user"
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    password: Mapped[Any] = mapped_column(PasswordHash(backend=Argon2Hasher()))
    is_active: Mapped[bool] = mapped_column(default=True)
    date_joined: Mapped[datetime] = mapped_column(server_default=func.now())


class UserRepository(repository.SQLAlchemyAsyncRepository[User]):
    model_type = User


class UserRead(Struct):
    id: int
    username: str
    email: str
    is_active: bool
    date_joined: datetime


class Credentials(Struct):
    username: str
    password: str


alchemy = SQLAlchemyAsyncConfig(
    connection_string=DATABASE_URL,
    session_config=AsyncSessionConfig(expire_on_commit=False),
    create_all=True,
)


async def retrieve_user_handler(token: Token, connection: ASGIConnection) -> User | None:
    async with alchemy.get_session() as session:
        return await UserRepository(session=session).get_one_or_none(id=int(token.sub), is_active=True)


jwt_auth = JWTAuth[User](
    retrieve_user_handler=retrieve_user_handler,
    token_secret=SECRET,
    exclude=["/login", "/$"],
)


def read(user: User) -> UserRead:
    return UserRead(user.id, user.username, user.email, user.is_active, user.date_joined)


@get("/", exclude_from_auth=True)
async def index() -> dict[str, str]:
    return {"hello": "world"}


@get("/me")
async def me(request: Request[User, Token, Any]) -> UserRead:
    return read(request.user)


@post("/login")
async def login(data: Credentials, db_session: AsyncSession) -> Any:
    user = await UserRepository(session=db_session).get_one_or_none(username=data.username)
    if user is None or not await sync_to_thread(user.password.verify, data.password):
        raise NotAuthorizedException("invalid credentials")
    return jwt_auth.login(identifier=str(user.id), send_token_as_response_body=True)


app = Litestar(
    route_handlers=[index, me, login],
    on_app_init=[jwt_auth.on_app_init],
    plugins=[SQLAlchemyPlugin(config=alchemy)],
    debug=False,
)


async def seed(count: int) -> str:
    async with alchemy.get_engine().begin() as conn:
        await conn.run_sync(BigIntBase.metadata.create_all)
    # one hash made by the column's own hasher, shared by every user so that seeding stays fast;
    # inserted through a plain table (the PasswordHash column type would hash the hash again)
    stored = User.__table__.c.password.type.backend.hash(PASSWORD)
    plain = table(
        "litestar_user",
        column("id"),
        column("username"),
        column("email"),
        column("password"),
        column("is_active"),
    )
    async with alchemy.get_engine().begin() as conn:
        await conn.execute(
            plain.insert(),
            [
                {
                    "id": i,  # explicit: the model's id sequence is applied by the ORM, not by this table
                    "username": f"bench{i}",
                    "email": f"bench{i}@example.com",
                    "password": stored,
                    "is_active": True,
                }
                for i in range(1, count + 1)
            ],
        )
    await alchemy.get_engine().dispose()
    return stored


if __name__ == "__main__" and sys.argv[1:2] == ["seed"]:
    hashed = asyncio.run(seed(int(sys.argv[2])))
    print(
        json.dumps(
            {"hasher": "advanced-alchemy PasswordHash(Argon2Hasher()), argon2-cffi defaults", "hash": hashed}
        )
    )
