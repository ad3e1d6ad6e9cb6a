"""A refresh token spent by a browser keeps its successor, sealed under a key derived from the spent
token, for the cookie transport's grace window (sessions.rotate); NULL for every other token."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('user', '0006_second_factors')]

    initial = False

    operations = [
        ops.AddField(
            model_name='RefreshToken',
            name='successor',
            field=fields.TextField(null=True, unique=False),
        ),
    ]
