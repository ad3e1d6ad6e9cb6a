from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('mail', '0001_initial')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Mail',
            name='composer',
            field=fields.CharField(null=True, max_length=40),
        ),
        ops.AddField(
            model_name='Mail',
            name='data',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
    ]
