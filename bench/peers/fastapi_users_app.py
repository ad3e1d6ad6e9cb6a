"""Peer: fastapi-users as its documentation sets it up (JWT strategy, bearer transport, SQLAlchemy),
on the same database as the service under test (its own table, "user").

    GET  /users/me        the current user (`Authorization: Bearer <JWT>`; one query)
    POST /auth/jwt/login  form fields username (the email) and password: fastapi-users' default
                          PasswordHelper (pwdlib: argon2-cffi's Argon2Hasher at its defaults), a JWT

Environment: DATABASE_URL (sqlite+aiosqlite:///... or postgresql+asyncpg://...), SECRET_KEY.
`python fastapi_users_app.py seed N` creates the table and users bench1@example.com..benchN@example.com
(one hash by the default PasswordHelper, shared) and prints the stored hash.
"""

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
from fastapi_users.db import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from fastapi_users.password import PasswordHelper
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

DATABASE_URL = os.environ["DATABASE_URL"]
SECRET = os.environ.get("SECRET_KEY", "")
PASSWORD = "bench-password-1"


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


engine = create_async_engine(DATABASE_URL)
async_session_maker = async_sessionmaker(engine, expire_on_commit=False)


async def get_async_session() -> AsyncGenerator[AsyncSession, None]:
    async with async_session_maker() as session:
        yield session


async def get_user_db(session: AsyncSession = Depends(get_async_session)):
    yield SQLAlchemyUserDatabase(session, User)


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = SECRET
    verification_token_secret = SECRET


async def get_user_manager(user_db=Depends(get_user_db)):
    yield UserManager(user_db)


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserCreate(schemas.BaseUserCreate):
    pass


class UserUpdate(schemas.BaseUserUpdate):
    pass


bearer_transport = BearerTransport(tokenUrl="auth/jwt/login")


def get_jwt_strategy() -> JWTStrategy:
    return JWTStrategy(secret=SECRET, lifetime_seconds=3600)


auth_backend = AuthenticationBackend(name="jwt", transport=bearer_transport, get_strategy=get_jwt_strategy)
fastapi_users = FastAPIUsers[User, uuid.UUID](get_user_manager, [auth_backend])


@asynccontextmanager
async def lifespan(app: FastAPI):
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
app.include_router(fastapi_users.get_auth_router(auth_backend), prefix="/auth/jwt")
app.include_router(fastapi_users.get_register_router(UserRead, UserCreate), prefix="/auth")
app.include_router(fastapi_users.get_users_router(UserRead, UserUpdate), prefix="/users")


async def seed(count: int) -> str:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        stored = PasswordHelper().hash(PASSWORD)
        await conn.execute(
            User.__table__.insert(),
            [
                {
                    "id": uuid.uuid4(),
                    "email": f"bench{i}@example.com",
                    "hashed_password": stored,
                    "is_active": True,
                    "is_superuser": False,
                    "is_verified": False,
                }
                for i in range(1, count + 1)
            ],
        )
    await engine.dispose()
    return stored


if __name__ == "__main__" and sys.argv[1:2] == ["seed"]:
    hashed = asyncio.run(seed(int(sys.argv[2])))
    print(
        json.dumps({"hasher": "fastapi-users PasswordHelper (pwdlib Argon2Hasher, defaults)", "hash": hashed})
    )
