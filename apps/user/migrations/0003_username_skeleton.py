"""Usernames get a TR39 skeleton (apps/user/usernames.py) with a unique index, so look-alikes are refused.

Three steps, so that no existing database can make it fail: the column comes without an index,
every row is filled in id order, batch by batch (memory stays bounded on a million users), and only
then does the index become unique. Accounts that are already look-alikes of an older one (a Django
import, or names registered before this rule) keep their names but get NULL, which a unique index
allows any number of times: the oldest account of each group holds the skeleton, later ones keep
logging in as before, and no new look-alike of any of them can be registered while it holds it.

Emails are renormalised the same pass (models.normalize_email now folds an IDN domain's punycode
and NFD spellings into the form registration stores); a row whose new form another row already has
is left as it is, since two accounts cannot be merged here.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

BATCH = 1000


async def fill_skeletons(apps, schema_editor) -> None:
    from apps.user.models import normalize_email
    from apps.user.usernames import username_skeleton

    client = schema_editor.client
    postgres = client.capabilities.dialect == "postgres"

    def sql(query: str) -> str:
        if not postgres:
            return query
        parts = query.split("?")
        return "".join(part + (f"${i}" if i < len(parts) else "") for i, part in enumerate(parts, 1))

    last_id = 0
    while True:
        _, rows = await client.execute_query(
            sql("SELECT id, username_key, email FROM user_user WHERE id > ? ORDER BY id LIMIT ?"),
            [last_id, BATCH],
        )
        if not rows:
            break
        await client.execute_many(
            sql("UPDATE user_user SET username_skeleton = ? WHERE id = ?"),
            [[username_skeleton(row["username_key"]), row["id"]] for row in rows],
        )
        for row in rows:
            email = normalize_email(row["email"])
            if email != row["email"]:
                await client.execute_query(
                    sql(
                        "UPDATE user_user SET email = ? WHERE id = ?"
                        " AND NOT EXISTS (SELECT 1 FROM user_user AS other WHERE other.email = ?)"
                    ),
                    [email, row["id"], email],
                )
        last_id = rows[-1]["id"]
    # Later look-alikes give the skeleton up to the oldest account of their group. The index is
    # temporary (an AlterField from db_index to unique trips over Tortoise's index names on PostgreSQL).
    await client.execute_script("CREATE INDEX user_user_skeleton_fill ON user_user (username_skeleton)")
    await client.execute_query(
        "UPDATE user_user SET username_skeleton = NULL WHERE EXISTS (SELECT 1 FROM user_user AS older"
        " WHERE older.username_skeleton = user_user.username_skeleton AND older.id < user_user.id)"
    )
    await client.execute_script("DROP INDEX user_user_skeleton_fill")


class Migration(migrations.Migration):
    dependencies = [("user", "0002_widen_username_key")]

    initial = False

    operations = [
        ops.AddField(
            model_name="User",
            name="username_skeleton",
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.RunPython(fill_skeletons, ops.RunPython.noop),
        ops.AlterField(
            model_name="User",
            name="username_skeleton",
            field=fields.CharField(null=True, unique=True, max_length=64),
        ),
    ]
