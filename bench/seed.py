"""Seed the service's database with N users "bench1".."benchN" (password "bench-password-1").

Run with the project's interpreter and DATABASE_URL set: python bench/seed.py N
Every user gets one argon2id hash made at the current policy, so logins never trigger an upgrade.
"""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tortoise import Tortoise, connections  # noqa: E402

import settings  # noqa: E402
from apps.user import passwords  # noqa: E402
from apps.user.models import User  # noqa: E402

PASSWORD = "bench-password-1"


async def seed(count: int) -> None:
    await Tortoise.init(config=settings.TORTOISE_ORM)
    try:
        password_hash = await passwords.hash_password(PASSWORD)
        connection = connections.get("default")
        if connection.capabilities.dialect == "postgres":
            # a million rows in one statement; the unique indexes are built as they go
            await connection.execute_query(
                "INSERT INTO user_user (username, username_key, email, password, is_active, is_staff,"
                " is_superuser, date_joined) SELECT 'bench' || g, 'bench' || g, 'bench' || g || '@example.com',"
                " $1, true, false, false, now() FROM generate_series(1, $2::int) AS g",
                [password_hash, count],
            )
            await connection.execute_script("ANALYZE user_user")
        else:
            batch = 5000
            for start in range(1, count + 1, batch):
                await User.bulk_create(
                    [
                        User(
                            username=f"bench{i}",
                            username_key=f"bench{i}",
                            email=f"bench{i}@example.com",
                            password=password_hash,
                        )
                        for i in range(start, min(start + batch, count + 1))
                    ]
                )
        print(f"seeded {count} users")
    finally:
        passwords.shutdown()
        await Tortoise.close_connections()


if __name__ == "__main__":
    asyncio.run(seed(int(sys.argv[1])))
